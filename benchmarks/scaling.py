"""Data-parallel scaling of digits training from one to two processes.

    python -m benchmarks.scaling [--quick] [--reps N] [--epochs E] [--batches B]

Each repetition trains the digits ODE-Net (the task's defaults: node model,
dopri5 rtol = atol = 1e-2, adjoint, global batch 32) once with one process and
once with two, every run a fresh ``torchrun`` (``python -m torch.distributed.run``)
with gloo on CPU, one thread per process, and a single-node c10d rendezvous on a
free 127.0.0.1 port chosen at run time. Both world sizes use the same global
batch (two processes take half of it each), so they take the same optimiser
steps over the same samples. The order of the two runs alternates between
repetitions.

The time of a run is the mean of the per-epoch ``seconds`` column its run folder's
``metrics.csv`` records (rank 0's clock, from the first batch of an epoch to the
end of its test evaluation), so interpreter start-up, imports, data loading,
rendezvous and the final figures are excluded. With the medians ``t1`` and ``t2``
over repetitions: speed-up ``t1 / t2`` and scaling efficiency ``t1 / (2 t2)``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.stats import median, rotated

TASK = "digits"
WORLD_SIZES = (1, 2)
# (epochs per run, repetitions): about a minute in quick mode on two cores.
QUICK = (1, 1)
FULL = (2, 3)
RUN_TIMEOUT_S = 1800
# Variables of an enclosing launch that would make the child join another group.
_LAUNCH_VARS = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
)


@dataclass
class RunTiming:
    """One training run: its world size (from summary.json), epoch seconds and
    mean field evaluations per batch (from metrics.csv), and the launch's wall
    time including start-up."""

    world_size: int
    epoch_s: list[float]
    nfe_forward: float | None = None
    nfe_backward: float | None = None
    launch_s: float | None = None

    @property
    def mean_epoch_s(self) -> float:
        return sum(self.epoch_s) / len(self.epoch_s)


@dataclass
class Scaling:
    """Median per-epoch seconds per world size and what follows from them."""

    epochs: int
    reps: int
    batches: int
    cores: int | None
    load_1min: float | None
    runs: dict[int, list[RunTiming]] = field(default_factory=dict)

    def median_s(self, world: int) -> float:
        return median([r.mean_epoch_s for r in self.runs[world]])

    @property
    def speedup(self) -> float:
        return speedup(self.median_s(1), self.median_s(2))

    @property
    def efficiency(self) -> float:
        return efficiency(self.median_s(1), self.median_s(2), 2)

    def as_dict(self) -> dict[str, object]:
        return {
            "task": TASK,
            "epochs": self.epochs,
            "reps": self.reps,
            "batches": self.batches,
            "cores": self.cores,
            "load_1min": self.load_1min,
            "median_epoch_s": {str(w): self.median_s(w) for w in self.runs},
            "speedup": self.speedup,
            "efficiency": self.efficiency,
            "runs": {str(w): [asdict(r) for r in rs] for w, rs in self.runs.items()},
        }


def speedup(t1: float, tn: float) -> float:
    if tn <= 0:
        raise ValueError(f"time with more processes must be positive, got {tn}")
    return t1 / tn


def efficiency(t1: float, tn: float, world: int) -> float:
    """Scaling efficiency ``t1 / (world * tn)``: 1 is perfect, 1/world no gain."""
    if world < 1:
        raise ValueError(f"world size must be at least 1, got {world}")
    return speedup(t1, tn) / world


def unavailable_reason() -> str | None:
    """Why two gloo processes cannot run here, or None when they can."""
    import torch.distributed as tdist

    if not tdist.is_available():
        return "torch.distributed is not available in this torch build"
    if not tdist.is_gloo_available():
        return "the gloo backend is not available in this torch build"
    return None


def core_count() -> int | None:
    """CPUs this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(
    world: int, port: int, out: Path, epochs: int, batches: int
) -> list[str]:
    """``torchrun`` for ``world`` processes training digits into ``out``."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(world),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--local-addr",
        "127.0.0.1",
        "-m",
        "torchnode",
        "train",
        TASK,
        "--epochs",
        str(epochs),
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    if batches:
        cmd += ["--limit-batches", str(batches)]
    return cmd


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS}
    # One thread per process, and gloo on the loopback interface only.
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    return env


def read_run(run_dir: Path) -> RunTiming:
    """World size (summary.json), per-epoch seconds and NFE (metrics.csv)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise RuntimeError(f"{run_dir / 'metrics.csv'} records no epoch")

    def mean(key: str) -> float:
        return sum(float(r[key]) for r in rows) / len(rows)

    seconds = [float(r["seconds"]) for r in rows]
    world = int(summary["world_size"])
    return RunTiming(world, seconds, mean("nfe_forward"), mean("nfe_backward"))


def run_once(world: int, out: Path, epochs: int, batches: int) -> RunTiming:
    cmd = launch_command(world, free_port(), out, epochs, batches)
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, env=child_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    launch_s = time.perf_counter() - start
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        tail = lines[-1] if lines else f"exit {proc.returncode}"
        raise RuntimeError(f"world size {world}: exit {proc.returncode}: {tail[:120]}")
    timing = read_run(out)
    if timing.world_size != world:
        raise RuntimeError(
            f"asked for world size {world}, run recorded {timing.world_size}"
        )
    timing.launch_s = launch_s
    return timing


def measure(epochs: int, reps: int, batches: int = 0) -> Scaling:
    """``reps`` repetitions of one run per world size, in alternating order."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    result = Scaling(epochs, reps, batches, core_count(), load_average())
    result.runs = {w: [] for w in WORLD_SIZES}
    names = [str(w) for w in WORLD_SIZES]
    with tempfile.TemporaryDirectory(prefix="torchnode-scaling-") as tmp:
        for rep in range(reps):
            for name in rotated(names, rep):
                world = int(name)
                out = Path(tmp) / f"w{world}-r{rep}"
                result.runs[world].append(run_once(world, out, epochs, batches))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="1 epoch, 1 rep")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--batches", type=int, default=0, help="batches per epoch (0: all)"
    )
    args = parser.parse_args(argv)
    epochs, reps = QUICK if args.quick else FULL
    result = measure(args.epochs or epochs, args.reps or reps, args.batches)
    print(json.dumps(result.as_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
