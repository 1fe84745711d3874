"""W7: data-parallel scaling of digits training, one process against two."""

from __future__ import annotations

from benchmarks import scaling
from benchmarks.results import Row, WorkloadResult
from benchmarks.workloads.common import Context

TITLE = (
    "digits ODE-Net training, torchrun with gloo on CPU, 1 thread per process, "
    "same global batch; seconds per epoch"
)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def rows(result: scaling.Scaling) -> list[Row]:
    """One row per world size; the two-process row carries the efficiency."""
    out = []
    for world, runs in result.runs.items():
        row = Row("W7", f"world={world}", "torchnode", "adjoint")
        row.times_s = [r.mean_epoch_s for r in runs]
        row.summarize()
        row.metrics = {"world_size": world, "epoch_s": result.median_s(world)}
        row.metrics["nfe_fwd"] = _mean([r.nfe_forward for r in runs])
        row.metrics["nfe_bwd"] = _mean([r.nfe_backward for r in runs])
        if world == 2:
            row.metrics["speedup"] = result.speedup
            row.metrics["efficiency"] = result.efficiency
        row.metrics["cores"] = result.cores
        out.append(row)
    return out


def run(ctx: Context) -> WorkloadResult:
    epochs, reps = scaling.QUICK if ctx.quick else scaling.FULL
    result = WorkloadResult("W7", f"{TITLE}, {epochs} epoch(s), median of {reps}")
    reason = scaling.unavailable_reason()
    if reason is not None:
        ctx.skips.add((reason, "torchnode"))
        return result
    if ctx.device != "cpu":
        result.notes.append("runs on CPU with gloo whatever --device says")
    try:
        measured = scaling.measure(epochs, reps)
    except Exception as exc:
        row = Row("W7", "world=1,2", "torchnode", "adjoint")
        row.error = str(exc)[:160]
        result.rows.append(row)
        return result
    result.rows.extend(rows(measured))
    load = "-" if measured.load_1min is None else f"{measured.load_1min:.2f}"
    result.notes.append(
        "each run is a fresh torchrun; times are the per-epoch seconds of the run "
        "folder's metrics.csv (start-up excluded; each epoch includes the test "
        "evaluation, which the ranks split between them)"
    )
    result.notes.append(
        f"efficiency = t1 / (2 t2) with t1, t2 the median epoch seconds; "
        f"{measured.cores} cores, 1-minute load {load} before the runs"
    )
    return result
