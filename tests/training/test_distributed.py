"""Two gloo processes on localhost train to the same parameters as one process."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[2] / "src"
ARGS = [
    "circles",
    "--model",
    "anode",
    "--method",
    "rk4",
    "--dtype",
    "float64",
    "--epochs",
    "1",
    "--batch-size",
    "32",
    "--limit-batches",
    "3",
    "--threads",
    "1",
    "--quiet",
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = str(SRC)
    env.update(extra)
    return env


def _test_metrics(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as fh:
        return [float(row["test_metric"]) for row in csv.DictReader(fh)]


def _params(run: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(run / "checkpoint.pt", weights_only=False)
    return payload["model"]


# Three interpreter start-ups (torch, matplotlib) take over 30 s on a busy machine.
@pytest.mark.slow
@pytest.mark.parametrize("gradient", ["adjoint", "direct", "checkpoint"])
def test_two_process_gloo_matches_single_process(tmp_path: Path, gradient: str) -> None:
    single, multi = tmp_path / "single", tmp_path / "multi"
    cmd = [sys.executable, "-m", "torchnode", "train", *ARGS, "--gradient", gradient]
    alone = subprocess.Popen([*cmd, "--out", str(single)], env=_env())
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [*cmd, "--out", str(multi)],
            env=_env(
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE="2",
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),
        )
        for rank in range(2)
    ]
    codes = [p.wait(timeout=120) for p in [alone, *procs]]
    assert codes == [0, 0, 0]

    a, b = _params(single), _params(multi)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == torch.float64 or not a[key].is_floating_point()
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert json.loads((multi / "summary.json").read_text())["world_size"] == 2
    # Each rank scores half of the test set; the reduced metric is the whole's.
    assert _test_metrics(multi) == _test_metrics(single)
