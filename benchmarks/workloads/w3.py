"""W3: peak memory of one forward+backward, one fresh process per point."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.adapters import GRAD_MODES, Spec
from benchmarks.results import Row, WorkloadResult
from benchmarks.workloads.common import Context

TITLE = "peak RSS, W2 MLP field, rk4 with step 1/steps on [0, 1], float32"
STEPS = (10, 100, 1000)
QUICK_STEPS = (10, 100, 300)
QUICK_LIBRARIES = ("torchnode", "torchdiffeq")


def measure_point(lib: str, mode: str, steps: int, batch: int, device: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--library",
        lib,
        "--mode",
        mode,
        "--steps",
        str(steps),
        "--batch",
        str(batch),
        "--device",
        device,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise RuntimeError(f"exit {proc.returncode}: {tail[:100]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def point_row(lib: str, mode: str, steps: int, batch: int, device: str) -> Row:
    row = Row("W3", f"steps={steps}", lib, mode)
    try:
        report = measure_point(lib, mode, steps, batch, device)
    except Exception as exc:
        row.error = str(exc)
        return row
    row.nfe_forward = report["nfe_forward"]
    row.nfe_backward = report["nfe_backward"]
    baseline = report["baseline_mb"]
    row.metrics = {
        "peak_MB": report["peak_mb"],
        "baseline_MB": baseline,
        "import_peak_MB": report["import_peak_mb"],
        "peak-baseline_MB": None if baseline is None else report["peak_mb"] - baseline,
        "fwd_bwd_s": report["seconds"],
    }
    return row


def run(ctx: Context) -> WorkloadResult:
    batch = 64 if ctx.quick else 512
    steps = QUICK_STEPS if ctx.quick else STEPS
    result = WorkloadResult("W3", f"{TITLE}, batch {batch}")
    adapters = ctx.only(QUICK_LIBRARIES) if ctx.quick else ctx.adapters
    points = []
    for adapter in adapters:
        for mode in GRAD_MODES:
            spec = Spec("rk4", 1e-6, 1e-6, {"step_size": 0.1}, mode=mode)
            reason = adapter.unsupported(spec)
            if reason is not None:
                ctx.skips.add((reason, adapter.name))
                continue
            points.extend((adapter.name, mode, s, batch, ctx.device) for s in steps)
    rows = [point_row(*point) for point in points]
    for i in range(0, len(rows), len(steps)):
        _ratios(rows[i : i + len(steps)])
    result.rows.extend(rows)
    if ctx.quick:
        result.notes.append(
            f"quick mode: {', '.join(QUICK_LIBRARIES)} only, steps {QUICK_STEPS}; "
            f"full mode measures every library at steps {STEPS}"
        )
    result.notes.append(
        "each point runs in a fresh process; peak_MB = ru_maxrss after one "
        "forward+backward, baseline_MB = resident set after imports and set-up, "
        "import_peak_MB = ru_maxrss at that moment; nothing is subtracted from peak_MB"
    )
    result.notes.append("xpeak10 = peak_MB / peak_MB at 10 steps (same library, mode)")
    return result


def _ratios(rows: list[Row]) -> None:
    first = rows[0].metrics.get("peak_MB")
    for row in rows:
        peak = row.metrics.get("peak_MB")
        if isinstance(first, float) and isinstance(peak, float):
            row.metrics["xpeak10"] = peak / first
