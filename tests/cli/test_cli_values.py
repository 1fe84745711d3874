"""Explicit settings are kept or refused in one line, never swapped for defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import torchnode
from torchnode.cli import main

FAST = ["--epochs", "1", "--limit-batches", "1", "--quiet"]


def test_explicit_zero_weight_decay_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "crossing", "--weight-decay", "0", *FAST, "--out", str(out)]
    assert main(args) == 0
    assert "weight_decay = 0.0" in (out / "config.toml").read_text()


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--epochs", "0"), ("--epochs", "-1"), ("--rtol", "-1"), ("--batch-size", "0")],
)
def test_out_of_range_values_are_refused_in_one_line(
    tmp_path: Path, capsys, flag: str, value: str
) -> None:
    out = tmp_path / "run"
    assert main(["train", "crossing", flag, value, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag.lstrip("-").replace("-", "_") in err
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path: Path, capsys) -> None:
    target = tmp_path / "afile"
    target.write_text("keep me")
    assert main(["train", "crossing", *FAST, "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "keep me"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_device_without_cuda_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "crossing", "--device", "cuda", "--out", str(out)]) == 2
    assert "needs CUDA" in capsys.readouterr().err


def test_solver_settings_the_method_refuses_are_one_line(tmp_path: Path, capsys):
    out = tmp_path / "run"
    args = ["train", "crossing", "--method", "rodas4", "--gradient", "adjoint"]
    assert main([*args, *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "adjoint" in err


def test_odeint_refuses_two_dimensional_times() -> None:
    with pytest.raises(ValueError, match="per_sample=True"):
        torchnode.odeint(lambda t, y: -y, torch.ones(2), torch.zeros(2, 2))
