"""End-to-end tests of the ``torchnode`` command line, each with a tiny budget."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchnode.cli import main
from torchnode.tasks.registry import TASKS

SRC = Path(__file__).resolve().parents[2] / "src"
FAST = ["--epochs", "1", "--limit-batches", "2", "--threads", "1", "--quiet"]

COMMON_FILES = {
    "config.toml",
    "metrics.csv",
    "checkpoint.pt",
    "summary.json",
    "loss.png",
    "metric.png",
    "nfe.png",
}
TASK_FILES = {
    "digits": {"confusion_matrix.png"},
    "spiral": {"phase_portrait.png", "vector_field.png"},
    "hare-lynx": {"forecast.png"},
    "sunspots": {"forecast.png"},
    "crossing": {"trajectories.png"},
    "circles": {"trajectories.png", "confusion_matrix.png"},
}


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("task", sorted(TASK_FILES))
def test_every_task_trains_and_writes_every_file(task: str, tmp_path: Path) -> None:
    out = tmp_path / task
    extra = ["--batch-size", "16"] if task == "digits" else []
    assert main(["train", task, "--out", str(out), *FAST, *extra]) == 0
    assert COMMON_FILES | TASK_FILES[task] <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    metric = "test_accuracy" if TASKS[task].kind == "classification" else "test_mse"
    for key in (metric, "params", "nfe_forward", "nfe_backward", "epochs"):
        assert key in summary
    assert summary["task"] == task and summary["world_size"] == 1
    assert summary["nfe_forward"] > 0
    if task == "sunspots":
        assert "baseline_mse" in summary
    rows = _rows(out)
    assert len(rows) == 1 and list(rows[0]) == [
        "epoch",
        "loss",
        "train_metric",
        "test_metric",
        "nfe_forward",
        "nfe_backward",
        "seconds",
        "peak_memory_mb",
    ]


def test_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    args = ["circles", "--limit-batches", "3", "--threads", "1", "--quiet"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", *args, "--epochs", "2", "--out", str(straight)]) == 0
    assert main(["train", *args, "--epochs", "1", "--out", str(split)]) == 0
    assert main(["train", "--resume", str(split), "--epochs", "2", "--quiet"]) == 0
    a, b = _rows(straight), _rows(split)
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        for key in ("loss", "train_metric", "test_metric", "nfe_forward"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), abs=1e-6)
    sa = json.loads((straight / "summary.json").read_text())
    sb = json.loads((split / "summary.json").read_text())
    assert sa["test_accuracy"] == pytest.approx(sb["test_accuracy"], abs=1e-6)
    assert sb["epochs"] == 2


def test_config_file_is_overridden_by_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('task = "crossing"\nepochs = 3\nlr = 0.05\nmethod = "rk4"\n')
    out = tmp_path / "run"
    code = main(["train", "--config", str(cfg), "--epochs", "1", "--out", str(out)])
    assert code == 0
    text = (out / "config.toml").read_text()
    assert 'task = "crossing"' in text and "epochs = 1" in text
    assert "lr = 0.05" in text and 'method = "rk4"' in text


def test_config_file_unknown_key_lists_valid_keys(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("epoch = 3\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "epoch" in err and "valid keys" in err and "batch_size" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_unknown_task_and_model_list_valid_ones(tmp_path: Path, capsys) -> None:
    assert main(["train", "nope", "--out", str(tmp_path / "a")]) == 2
    assert "digits" in capsys.readouterr().err
    assert main(["train", "spiral", "--model", "resnet", "--out", str(tmp_path)]) == 2
    assert "valid models: node" in capsys.readouterr().err


def test_existing_folder_refused_unless_force(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = ["train", "crossing", "--out", str(out), *FAST]
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    assert main([*args, "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "summary.json").exists()


def test_corrupt_checkpoint_is_reported_and_kept(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "crossing", "--out", str(out), *FAST]) == 0
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_missing_checkpoint_and_unwritable_output(tmp_path: Path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path / "none"), "--quiet"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", "crossing", "--out", str(blocker / "run"), *FAST]) == 2
    assert "cannot write to output folder" in capsys.readouterr().err


def test_fashion_mnist_without_data_names_the_package(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    from torchnode.tasks import datasets

    # As on a machine without the package, whether or not this one has it.
    monkeypatch.setattr(datasets, "FASHION_MNIST_ROOT", str(tmp_path / "missing"))
    assert main(["train", "fashion-mnist", "--out", str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "dataset-fashion-mnist" in err and "Traceback" not in err


def test_evaluate_sweeps_solver_settings(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "circles", "--out", str(out), *FAST]) == 0
    sweep = ["--rtol", "1e-2", "--rtol", "1e-4", "--euler-steps", "2"]
    code = main(["evaluate", str(out), *sweep, "--euler-steps", "8"])
    assert code == 0
    text = capsys.readouterr().out
    assert "dopri5" in text and "euler" in text
    with open(out / "evaluate.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == ["dopri5", "dopri5", "euler", "euler"]
    nfe = {r["steps"]: float(r["nfe_forward"]) for r in rows if r["method"] == "euler"}
    assert nfe["2"] < nfe["8"]
    assert (out / "metric_vs_nfe.png").exists()


def test_tasks_lists_the_table(capsys) -> None:
    assert main(["tasks"]) == 0
    text = capsys.readouterr().out
    for name in TASKS:
        assert name in text


def test_module_entry_point_and_one_line_errors(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, "-m", "torchnode", "train", "--model", "x", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "valid models" in proc.stderr


def test_float64_spiral_run_draws_its_vector_field(tmp_path: Path) -> None:
    out = tmp_path / "spiral64"
    args = ["train", "spiral", "--dtype", "float64", "--out", str(out), *FAST]
    assert main(args) == 0
    assert (out / "vector_field.png").stat().st_size > 0
