"""The data-parallel scaling benchmark (W7): run-folder parsing, the efficiency
arithmetic, its rows, the skip without gloo, and one tiny real two-process run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch.distributed as tdist
from benchmarks.workloads import WORKLOADS, w7
from benchmarks.workloads.common import Context

from benchmarks import scaling
from torchnode.training.loop import METRIC_COLUMNS


def _run_folder(path: Path, world: int, seconds: list[float]) -> Path:
    path.mkdir(parents=True)
    with open(path / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for epoch, s in enumerate(seconds, 1):
            row = dict.fromkeys(METRIC_COLUMNS, 0.5)
            row.update(epoch=epoch, seconds=s, nfe_forward=26, nfe_backward=epoch * 10)
            writer.writerow(row)
    summary = {"task": "digits", "epochs": len(seconds), "world_size": world}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_read_run_takes_world_size_and_epoch_seconds(tmp_path):
    run = scaling.read_run(_run_folder(tmp_path / "r", 2, [4.25, 3.75]))
    assert run.world_size == 2 and run.epoch_s == [4.25, 3.75]
    assert run.mean_epoch_s == 4.0
    assert run.nfe_forward == 26.0 and run.nfe_backward == 15.0
    empty = _run_folder(tmp_path / "e", 1, [])
    with pytest.raises(RuntimeError, match="no epoch"):
        scaling.read_run(empty)


def test_efficiency_is_t1_over_world_times_tn():
    assert scaling.speedup(10.0, 6.25) == pytest.approx(1.6)
    assert scaling.efficiency(10.0, 6.25, 2) == pytest.approx(0.8)
    assert scaling.efficiency(10.0, 10.0, 2) == pytest.approx(0.5)
    assert scaling.efficiency(10.0, 2.5, 4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        scaling.efficiency(1.0, 0.0, 2)
    with pytest.raises(ValueError):
        scaling.efficiency(1.0, 1.0, 0)


def _timing(world: int, *epochs: float) -> scaling.RunTiming:
    return scaling.RunTiming(world, list(epochs), 26.0, 2.0 * world, launch_s=20.0)


def test_medians_over_repetitions_give_the_rows():
    result = scaling.Scaling(2, 3, 0, cores=2, load_1min=1.0)
    result.runs = {
        1: [_timing(1, 9.0, 11.0), _timing(1, 12.0, 12.0), _timing(1, 30.0, 30.0)],
        2: [_timing(2, 8.0, 8.0), _timing(2, 6.0, 7.0), _timing(2, 7.0, 9.0)],
    }
    assert result.median_s(1) == 12.0 and result.median_s(2) == 8.0
    assert result.efficiency == pytest.approx(12.0 / 16.0)
    assert result.as_dict()["median_epoch_s"] == {"1": 12.0, "2": 8.0}
    one, two = w7.rows(result)
    assert (one.case, two.case) == ("world=1", "world=2")
    assert one.metrics["world_size"] == 1 and "efficiency" not in one.metrics
    assert two.metrics["world_size"] == 2 and two.metrics["cores"] == 2
    assert two.metrics["speedup"] == pytest.approx(1.5)
    assert two.metrics["efficiency"] == pytest.approx(0.75)
    assert two.median_s == 8.0 and two.times_s == [8.0, 6.5, 8.0]
    assert one.metrics["nfe_bwd"] == 2.0 and two.metrics["nfe_bwd"] == 4.0


def test_launch_uses_a_local_rendezvous_and_the_same_global_batch(tmp_path):
    cmd = scaling.launch_command(2, 40123, tmp_path, epochs=1, batches=3)
    text = " ".join(cmd)
    assert "--nproc-per-node 2" in text
    assert "--rdzv-endpoint 127.0.0.1:40123" in text
    assert "--local-addr 127.0.0.1" in text
    assert "train digits" in text and "--limit-batches 3" in text
    assert "--batch-size" not in text  # the task's global batch at every size
    assert "--limit-batches" not in " ".join(
        scaling.launch_command(1, 1, tmp_path, 1, 0)
    )


def test_child_environment_leaves_an_enclosing_launch(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("MASTER_PORT", "1")
    env = scaling.child_env()
    assert "WORLD_SIZE" not in env and "MASTER_PORT" not in env
    assert env["OMP_NUM_THREADS"] == "1"


def test_w7_is_selectable_and_skips_without_gloo(monkeypatch):
    assert "W7" in WORKLOADS
    monkeypatch.setattr(tdist, "is_gloo_available", lambda: False)

    def never(*args, **kwargs):
        raise AssertionError("measured although gloo is missing")

    monkeypatch.setattr(scaling, "measure", never)
    ctx = Context([], quick=True)
    result = w7.run(ctx)
    assert result.rows == []
    reason = "the gloo backend is not available in this torch build"
    assert ctx.skips == {(reason, "torchnode")}


# Two torchrun launches (interpreter, torch, rendezvous) take 30 s or more on a
# busy two-core machine.
@pytest.mark.slow
def test_tiny_real_measurement_records_both_world_sizes():
    if scaling.unavailable_reason() is not None:
        pytest.skip(scaling.unavailable_reason())
    result = scaling.measure(epochs=1, reps=1, batches=1)
    assert [r.world_size for r in result.runs[1]] == [1]
    assert [r.world_size for r in result.runs[2]] == [2]
    t1, t2 = result.median_s(1), result.median_s(2)
    assert t1 > 0 and t2 > 0
    assert result.efficiency == pytest.approx(t1 / (2 * t2))
    assert result.cores is not None and result.cores >= 1
