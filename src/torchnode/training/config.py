"""The resolved settings of a training run, and their TOML form."""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - depends on the interpreter
    import tomli as tomllib

__all__ = ["ConfigError", "TrainConfig", "dump_toml", "read_config_file"]


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


GRADIENTS = ("direct", "adjoint", "checkpoint")
DTYPES = ("float32", "float64")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Everything that determines a training run."""

    task: str = "digits"
    model: str = ""
    method: str = ""
    rtol: float = 0.0
    atol: float = 0.0
    gradient: str = ""
    epochs: int = 0
    batch_size: int = 0
    lr: float = 0.0
    # "constant", or "cosine": decay to 0 over `epochs` (extending `epochs` on
    # resume then changes the schedule from that point on).
    lr_schedule: str = ""
    weight_decay: float = -1.0
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    limit_batches: int = 0
    # One thread by default: these models are small, and two OpenMP threads on a
    # shared 2-core machine ran up to 100x slower than one in our measurements.
    # 0 keeps torch's default.
    threads: int = 1

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, values: dict[str, Any]) -> TrainConfig:
        """A copy with ``values`` applied; unknown keys and bad types are errors."""
        unknown = sorted(set(values) - set(self.keys()))
        if unknown:
            raise ConfigError(
                f"unknown configuration key(s) {', '.join(unknown)}; valid keys: "
                f"{', '.join(self.keys())}"
            )
        current = self.as_dict()
        for key, value in values.items():
            expected = type(current[key])
            if (
                expected is float
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            if type(value) is not expected:
                raise ConfigError(
                    f"configuration key {key!r} needs a {expected.__name__}, "
                    f"got {value!r}"
                )
            _check_explicit(key, value)
            current[key] = value
        return TrainConfig(**current)

    def validate(self, models: tuple[str, ...]) -> None:
        """Checks the values once the task defaults have been filled in."""
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ConfigError(
                    f"device {self.device!r} needs CUDA, but this torch build has no "
                    "usable CUDA device; use --device cpu"
                )
        if self.model not in models:
            raise ConfigError(
                f"unknown model {self.model!r} for task {self.task!r}; valid models: "
                f"{', '.join(models)}"
            )
        if self.gradient not in GRADIENTS:
            raise ConfigError(
                f"unknown gradient {self.gradient!r}; valid: {', '.join(GRADIENTS)}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"unknown lr_schedule {self.lr_schedule!r}; valid: "
                f"{', '.join(LR_SCHEDULES)}"
            )
        if self.dtype not in DTYPES:
            raise ConfigError(
                f"unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}"
            )
        import torchnode

        if self.method not in torchnode.methods():
            raise ConfigError(
                f"unknown method {self.method!r}; valid methods: "
                f"{', '.join(torchnode.methods())}"
            )
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key in ("rtol", "atol", "lr"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}")
        if self.threads < 0:
            raise ConfigError("threads must be 0 (torch's default) or positive")
        if self.limit_batches < 0:
            raise ConfigError("limit_batches must be 0 (no limit) or positive")


# Explicitly given values must be in range: the unset markers (0, -1, "") are
# never valid choices, so an explicit 0 cannot silently become a task default.
_POSITIVE = ("rtol", "atol", "lr")
_AT_LEAST_ONE = ("epochs", "batch_size")
_NON_NEGATIVE = ("weight_decay", "threads", "limit_batches")


def _check_explicit(key: str, value: Any) -> None:
    if key in _POSITIVE and not value > 0:
        raise ConfigError(f"{key} must be positive, got {value!r}")
    if key in _AT_LEAST_ONE and value < 1:
        raise ConfigError(f"{key} must be at least 1, got {value!r}")
    if key in _NON_NEGATIVE and value < 0:
        raise ConfigError(f"{key} must be 0 or more, got {value!r}")
    if key in ("task", "model", "method", "gradient") and value == "":
        raise ConfigError(f"{key} must not be empty")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The key/value table of a TOML configuration file."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read configuration file {path}: {exc.strerror}"
        ) from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"configuration file {path} is not valid TOML: {exc}"
        ) from None
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise ConfigError(
            f"configuration file {path}: tables are not supported ({', '.join(nested)})"
        )
    return data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        escaped = escaped.replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dump_toml(values: dict[str, Any], header: str = "") -> str:
    """A flat table of strings, numbers, booleans and lists as TOML text."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in values.items():
        if not key.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"cannot write key {key!r} as a bare TOML key")
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
