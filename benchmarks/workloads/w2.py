"""W2: MLP field, forward and forward+backward in every gradient mode."""

from __future__ import annotations

import torch

from benchmarks.adapters import GRAD_MODES, Spec
from benchmarks.fields import CountingField, MLPField
from benchmarks.results import Row, WorkloadResult
from benchmarks.workloads.common import Context, attach, time_field_call

TITLE = "MLP 64-256-256-64 tanh, dopri5 rtol=1e-5 atol=1e-7, t=[0, 1]"
SIZES = [64, 256, 256, 64]


def mlp_problem(batch: int, device: str, seed: int = 0, scale: float = 1.0):
    """Field, initial states (seeded) of the W2 family, float32."""
    field = CountingField(MLPField(SIZES, seed=seed, scale=scale)).to(device)
    gen = torch.Generator().manual_seed(seed + 1)
    y0 = torch.randn(batch, SIZES[0], generator=gen).to(device)
    return field, y0


def run(ctx: Context) -> WorkloadResult:
    batch = 32 if ctx.quick else 512
    result = WorkloadResult("W2", f"{TITLE}, batch {batch}, float32")
    field, y0 = mlp_problem(batch, ctx.device)
    t = torch.tensor([0.0, 1.0], device=ctx.device)
    call_s = time_field_call(field, y0, t, ctx.device)
    for mode in ("forward", *GRAD_MODES):
        spec = Spec("dopri5", 1e-5, 1e-7, mode=mode)
        rows, _ = ctx.case("W2", "mlp", field, y0, t, spec)
        if mode == "forward":
            attach(rows, lambda r: _bookkeeping(r, call_s))
        result.rows.extend(rows)
    result.notes.append(f"one field call {call_s * 1e3:.3f} ms (no autograd graph)")
    result.notes.append("bookkeeping = median forward time / (NFE x one field call)")
    result.notes.append("gradient rows: loss = sum(y(1)**2), parameters only")
    return result


def _bookkeeping(row: Row, call_s: float) -> dict:
    if row.median_s is None or not row.nfe_forward:
        return {}
    return {"bookkeeping": row.median_s / (row.nfe_forward * call_s)}
