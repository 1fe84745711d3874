"""Validating and normalising a problem once, at the entry point.

Every solver downstream sees one canonical problem: a flat working state, output
times as Python floats (float64), tolerances as floats or flat tensors, a norm,
and validated options. Nothing below this module re-checks user input.
"""

from __future__ import annotations

import difflib
import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import torch

from .._errors import ToleranceWarning
from .._numerics.norms import Norm, make_mixed_rms, rms_norm
from .._warn import warn
from .field import Field, Layout

__all__ = [
    "ADAPTIVE_OPTIONS",
    "EXPLICIT_FIXED_OPTIONS",
    "FIXED_OPTIONS",
    "Problem",
    "check_method_options",
    "normalize",
]

ADAPTIVE_OPTIONS = frozenset(
    {
        "first_step",
        "safety",
        "ifactor",
        "dfactor",
        "min_step",
        "max_step",
        "max_num_steps",
        "dtype",
        "step_t",
        "jump_t",
        "norm",
        "controller",
    }
)
FIXED_OPTIONS = frozenset({"step_size", "grid_constructor", "interp", "perturb"})
# Explicit Runge-Kutta methods on a fixed grid can also compile their steps.
EXPLICIT_FIXED_OPTIONS = FIXED_OPTIONS | {"compile"}
ADAMS_OPTIONS = FIXED_OPTIONS | {"max_order", "max_iters"}
ALL_OPTIONS = ADAPTIVE_OPTIONS | ADAMS_OPTIONS | EXPLICIT_FIXED_OPTIONS

_LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass
class Problem:
    """A validated problem in the solver's canonical form.

    Attributes:
        field: the wrapped vector field (flat state, float time).
        y0: initial state, flat ``[N]`` in the working dtype.
        t: output times as floats, in the caller's order.
        t_tensor: the caller's ``t`` tensor.
        rtol, atol: floats, or flat ``[N]`` tensors of the working real dtype.
        norm: error norm on the flat scaled error.
        layout: how the flat state maps back to the caller's structure.
        options: the method's options, validated.
        f0: ``field(t[0], y0)`` ``[N]`` when it has been evaluated already (by
            parameter discovery), counted in ``field.nfe``; ``None`` otherwise.
            Whoever replaces ``y0`` by a different state must drop it.
    """

    field: Field
    y0: torch.Tensor
    t: list[float]
    t_tensor: torch.Tensor
    rtol: float | torch.Tensor
    atol: float | torch.Tensor
    norm: Norm
    layout: Layout
    options: dict[str, Any] = dc_field(default_factory=dict)
    f0: torch.Tensor | None = None

    @property
    def direction(self) -> float:
        return 1.0 if self.t[-1] >= self.t[0] else -1.0

    def first_field(self, t: float, y: torch.Tensor, perturb: int = 0) -> torch.Tensor:
        """``field(t, y, perturb)`` for a solve loop's first evaluation: the stored
        :attr:`f0` when that is this evaluation (``y`` is ``y0`` itself, ``t`` is
        ``t[0]``, no one-sided limit), else a new one."""
        if self.f0 is not None and perturb == 0 and y is self.y0 and t == self.t[0]:
            return self.f0
        return self.field(t, y, perturb)


def _as_parts(y0) -> tuple[list[torch.Tensor], bool]:
    if isinstance(y0, torch.Tensor):
        return [y0], False
    if isinstance(y0, (tuple, list)) and len(y0) > 0:
        for i, p in enumerate(y0):
            if not isinstance(p, torch.Tensor):
                raise TypeError(
                    f"y0 must be a tensor or a tuple of tensors, but part {i} is "
                    f"{type(p).__name__}"
                )
        return list(y0), True
    raise TypeError(
        f"y0 must be a tensor or a non-empty tuple of tensors, but got "
        f"{type(y0).__name__}"
    )


def _check_state(parts: list[torch.Tensor]) -> torch.dtype:
    dtype = parts[0].dtype
    for i, p in enumerate(parts):
        if not (p.is_floating_point() or p.is_complex()):
            raise TypeError(
                f"y0 must be floating point or complex, but got dtype {p.dtype}"
                + (f" in part {i}" if len(parts) > 1 else "")
                + "; convert it with y0.float() or y0.double()"
            )
        if p.dtype != dtype:
            raise TypeError(
                f"all parts of a tuple y0 must share one dtype, but part 0 is "
                f"{dtype} and part {i} is {p.dtype}"
            )
        if p.device != parts[0].device:
            raise ValueError(
                f"all parts of a tuple y0 must be on one device, but part 0 is on "
                f"{parts[0].device} and part {i} on {p.device}"
            )
    if sum(p.numel() for p in parts) == 0:
        shapes = ", ".join(str(tuple(p.shape)) for p in parts)
        raise ValueError(f"y0 must have at least one element, but got shape {shapes}")
    return dtype


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision states are integrated in float32: their 10 or 7 mantissa
    # bits cannot hold the error estimate or a small step's increment.
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _check_t(t, device: torch.device, allow_single: bool = False) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a 1-D tensor of times, but got {type(t).__name__}")
    if t.ndim != 1:
        raise ValueError(f"t must be 1-D, but got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(
            f"t must be a floating point tensor, but got dtype {t.dtype}; "
            "use torch.tensor([...], dtype=torch.float64) or t.double()"
        )
    if t.numel() < (1 if allow_single else 2):
        raise ValueError(
            f"t must hold at least 2 times (start and end), but got {t.numel()}"
        )
    if t.device != device:
        raise ValueError(
            f"t must be on y0's device {device}, but got {t.device}; "
            "move it with t.to(y0.device)"
        )
    return t


def _check_times(times: list[float]) -> None:
    if not all(math.isfinite(x) for x in times):
        raise ValueError(f"t must be finite, but got {times}")
    if not math.isfinite(times[-1] - times[0]):
        raise ValueError(
            f"t must span a finite interval, but t[-1] - t[0] overflows: "
            f"t[0] = {times[0]}, t[-1] = {times[-1]}"
        )
    diffs = [b - a for a, b in itertools.pairwise(times)]
    if any(d > 0 for d in diffs) and any(d < 0 for d in diffs):
        i = next(
            i
            for i, d in enumerate(diffs)
            if d * (1 if times[-1] > times[0] else -1) < 0
        )
        raise ValueError(
            "t must be monotonic (increasing or decreasing), but it turns at "
            f"index {i + 1}: t[{i}] = {times[i]}, t[{i + 1}] = {times[i + 1]}"
        )


def _tolerance(
    name: str,
    value,
    parts: list[torch.Tensor],
    layout: Layout,
    real_dtype: torch.dtype,
) -> float | torch.Tensor:
    """A tolerance as a float, or a flat ``[N]`` tensor for per-component ones."""
    if isinstance(value, (tuple, list)):
        if not layout.is_tuple or len(value) != len(parts):
            raise ValueError(
                f"a tuple {name} needs a tuple y0 with as many parts: {name} has "
                f"{len(value)} entries, y0 has "
                f"{len(parts) if layout.is_tuple else 'no'} parts"
            )
        pieces = [
            torch.as_tensor(v, dtype=real_dtype, device=p.device)
            .expand(p.shape)
            .reshape(-1)
            for v, p in zip(value, parts)
        ]
        tol = torch.cat(pieces)
    elif isinstance(value, torch.Tensor) and value.numel() > 1:
        if layout.is_tuple:
            raise ValueError(
                f"a tensor {name} with several values needs a plain tensor y0; "
                f"for a tuple y0 give one {name} per part"
            )
        try:
            tol = value.to(dtype=real_dtype, device=parts[0].device).expand(
                parts[0].shape
            )
        except RuntimeError:
            raise ValueError(
                f"{name} must broadcast to y0's shape {tuple(parts[0].shape)}, but "
                f"got shape {tuple(value.shape)}"
            ) from None
        tol = tol.reshape(-1)
    else:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must be a number, a tensor or a tuple of them, but got "
                f"{type(value).__name__}"
            ) from None
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be finite and >= 0, but got {v}")
        return v
    if not bool(torch.isfinite(tol).all()) or bool((tol < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0, but got {value}")
    if tol.numel() > 0 and bool((tol == tol[0]).all()):
        return float(tol[0])
    return tol


def _clamp_rtol(rtol, atol, work_dtype: torch.dtype):
    """Warns on and replaces a relative tolerance the dtype cannot represent.

    Below the unit roundoff ``eps / 2`` no step can meet the tolerance, so the
    solve would end in step-size underflow; such an rtol becomes ``eps``, the
    tightest one the dtype can honour. (scipy uses ``100 * eps``, which in float32
    would be looser than torchdiffeq's default rtol = 1e-7, which works.)
    """
    eps = torch.finfo(work_dtype).eps
    floor = eps
    r_min = float(rtol.min()) if isinstance(rtol, torch.Tensor) else rtol
    r_max = float(rtol.max()) if isinstance(rtol, torch.Tensor) else rtol
    if r_min < eps / 2:
        warn(
            f"rtol = {r_min:g} is below the unit roundoff {eps / 2:.3g} of "
            f"{work_dtype}, so no step could meet it; using rtol = {floor:.3g}. "
            "Use a wider dtype (float64) for tighter tolerances.",
            ToleranceWarning,
        )
        rtol = rtol.clamp(min=floor) if isinstance(rtol, torch.Tensor) else floor
    if r_max >= 1:
        warn(
            f"rtol = {r_max:g} >= 1 allows errors as large as the solution itself; "
            "the step size is then held only by the method's linear stability "
            "for the field's current Jacobian, which keeps a contracting linear "
            "system bounded but gives a nonlinear one no accuracy at all (a damped "
            "pendulum may gain energy). Use rtol < 1 (typically 1e-3 to 1e-8).",
            ToleranceWarning,
        )
    return rtol, atol


def _make_norm(norm_opt, layout: Layout) -> Norm:
    if norm_opt is None:
        if layout.is_tuple and len(layout.numels) > 1:
            return make_mixed_rms(layout.numels)
        return rms_norm
    if not callable(norm_opt):
        raise TypeError(
            f"options['norm'] must be a callable taking the scaled error and "
            f"returning a scalar tensor, but got {type(norm_opt).__name__}"
        )

    def user_norm(ratio: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(norm_opt(layout.unflatten(ratio.to(layout.dtype))))

    return user_norm


def check_method_options(method: str, options: dict | None, valid: frozenset) -> dict:
    """Validates option keys for ``method``: unknown keys raise, keys that belong
    to another kind of method warn and are ignored."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict, but got {type(options).__name__}")
    out = {}
    for key, value in options.items():
        if key in valid:
            out[key] = value
        elif key in ALL_OPTIONS:
            warn(
                f"option {key!r} has no effect with method {method!r}; it applies to "
                "other methods. Valid options here: " + ", ".join(sorted(valid)),
                UserWarning,
            )
        else:
            close = difflib.get_close_matches(str(key), sorted(ALL_OPTIONS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ValueError(
                f"unknown option {key!r} for method {method!r}{hint} Valid options: "
                + ", ".join(sorted(valid))
            )
    _check_option_values(out)
    return out


# Numeric options: (predicate, rule as written in the message).
_OPTION_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "first_step": (lambda v: 0 < v < math.inf, "a finite number > 0"),
    "min_step": (lambda v: 0 <= v < math.inf, "a finite number >= 0"),
    "max_step": (lambda v: v > 0, "a number > 0"),
    "safety": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "ifactor": (lambda v: 1 <= v < math.inf, "a finite number >= 1"),
    "dfactor": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "max_num_steps": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),
    "step_size": (lambda v: 0 < v < math.inf, "a finite number > 0"),
}


def _check_option_values(options: dict) -> None:
    for key, (ok, rule) in _OPTION_RULES.items():
        if key not in options or options[key] is None:
            continue
        value = options[key]
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"options[{key!r}] must be {rule}, but got {type(value).__name__} "
                f"{value!r}"
            ) from None
        if not ok(v):
            raise ValueError(f"options[{key!r}] must be {rule}, but got {value!r}")
    setting = options.get("compile")
    if setting is not None and not (
        isinstance(setting, bool)
        or (isinstance(setting, numbers.Integral) and int(setting) >= 1)
    ):
        raise ValueError(
            f"options['compile'] must be True, False or a number of steps per "
            f"compiled call >= 1, but got {setting!r}"
        )
    for key in ("jump_t", "step_t"):
        value = options.get(key)
        if value is None:
            continue
        try:
            times = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            times = None
        if times is None or not bool(torch.isfinite(times).all()):
            raise ValueError(
                f"options[{key!r}] must be a tensor or sequence of finite times, but "
                f"got {value!r}"
            )
    if "min_step" in options and "max_step" in options:
        lo, hi = float(options["min_step"]), float(options["max_step"])
        if lo > hi:
            raise ValueError(
                f"options['min_step'] must not exceed options['max_step'], but got "
                f"{lo} > {hi}"
            )


def normalize(
    func: Callable,
    y0,
    t: torch.Tensor,
    rtol,
    atol,
    options: dict,
    *,
    allow_single_time: bool = False,
    check_tolerances: bool = True,
) -> Problem:
    """Checks the inputs and builds the canonical :class:`Problem`."""
    if not callable(func):
        raise TypeError(f"func must be callable as func(t, y), got {type(func)}")
    parts, is_tuple = _as_parts(y0)
    dtype = _check_state(parts)
    device = parts[0].device
    t = _check_t(t, device, allow_single=allow_single_time)
    times = t.detach().to(torch.float64).tolist()
    _check_times(times)
    work = _work_dtype(dtype)
    layout = Layout([p.shape for p in parts], dtype, is_tuple)
    y0_flat = layout.flatten(parts if is_tuple else parts[0], work)
    real = y0_flat.real.dtype if work.is_complex else work
    rtol_n = _tolerance("rtol", rtol, parts, layout, real)
    atol_n = _tolerance("atol", atol, parts, layout, real)
    if check_tolerances:
        rtol_n, atol_n = _clamp_rtol(rtol_n, atol_n, real)
    t_dtype = t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32
    fld = Field(func, layout, t_dtype, work, device)
    norm = _make_norm(options.get("norm"), layout)
    return Problem(fld, y0_flat, times, t, rtol_n, atol_n, norm, layout, options)


def sorted_times_in(
    values: Sequence[float] | torch.Tensor | None, t0: float, t1: float
) -> list[float]:
    """Times strictly inside ``(t0, t1)``, ordered along the direction of travel."""
    if values is None:
        return []
    if isinstance(values, torch.Tensor):
        values = values.detach().to(torch.float64).reshape(-1).tolist()
    lo, hi = min(t0, t1), max(t0, t1)
    inside = sorted({float(v) for v in values if lo < float(v) < hi})
    return inside if t1 >= t0 else inside[::-1]
