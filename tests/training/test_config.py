"""The TOML writer, configuration updates and the solver-failure path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchnode.training import ConfigError, RunError, TrainConfig, train
from torchnode.training.config import dump_toml, read_config_file


def test_toml_round_trip(tmp_path: Path) -> None:
    values = {"a": 1, "b": 0.001, "c": 'say "hi"\n', "d": True, "e": [1, 2.5]}
    path = tmp_path / "x.toml"
    path.write_text(dump_toml(values, "header line"))
    assert read_config_file(path) == values


def test_update_rejects_unknown_keys_and_bad_types() -> None:
    with pytest.raises(ConfigError, match="valid keys"):
        TrainConfig().updated({"nope": 1})
    with pytest.raises(ConfigError, match="needs a int"):
        TrainConfig().updated({"epochs": "3"})
    assert TrainConfig().updated({"lr": 1}).lr == 1.0


def test_solver_error_names_epoch_and_batch(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    config = TrainConfig(task="crossing", epochs=2, threads=1)
    train(config.updated({"epochs": 1}), out)
    good = (out / "checkpoint.pt").read_bytes()

    from torchnode.nn import MLPField

    calls = {"n": 0}
    original = MLPField.forward

    def exploding(self, t, x):
        calls["n"] += 1
        return original(self, t, x) * float("nan")

    monkeypatch.setattr(MLPField, "forward", exploding)
    with pytest.raises(RunError, match=r"epoch 2, batch 1"):
        train(config, out, resume=True)
    assert (out / "checkpoint.pt").read_bytes() == good
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
