"""W1: linear oscillator dy/dt = A y against the matrix exponential."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from benchmarks.adapters import Spec
from benchmarks.fields import CountingField, LinearField
from benchmarks.results import Row, WorkloadResult
from benchmarks.workloads.common import Context, attach, time_field_call

TITLE = "linear 2-D oscillator, final-time error vs expm"
MATRIX = [[-0.1, 2.0], [-2.0, -0.1]]


def _specs(tols: tuple[float, ...]) -> list[tuple[str, Spec]]:
    specs = [
        (f"{m} tol={tol:g}", Spec(m, tol, tol))
        for m in ("dopri5", "tsit5")
        for tol in tols
    ]
    specs.append(("rk4 h=0.01", Spec("rk4", 1e-6, 1e-6, {"step_size": 0.01})))
    return specs


def _initial_states(batch: int, device: str) -> torch.Tensor:
    if batch == 1:
        return torch.tensor([[2.0, 0.0]], dtype=torch.float64, device=device)
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, 2, generator=gen, dtype=torch.float64).to(device)


def _exact(y0: torch.Tensor, t_end: float) -> np.ndarray:
    return y0.cpu().numpy() @ scipy.linalg.expm(np.array(MATRIX) * t_end).T


def run(ctx: Context) -> WorkloadResult:
    t_end = 2.5 if ctx.quick else 25.0
    result = WorkloadResult("W1", f"{TITLE}, t=[0, {t_end:g}], float64")
    matrix = torch.tensor(MATRIX, dtype=torch.float64, device=ctx.device)
    field = CountingField(LinearField(matrix))
    t = torch.tensor([0.0, t_end], dtype=torch.float64, device=ctx.device)
    for batch in (1, 1024):
        y0 = _initial_states(batch, ctx.device)
        exact = _exact(y0, t_end)
        call_s = time_field_call(field, y0, t, ctx.device)
        for label, spec in _specs((1e-6, 1e-9)):
            rows, last = ctx.case("W1", f"b={batch} {label}", field, y0, t, spec)

            attach(rows, lambda r, last=last, exact=exact: _error(r, last, exact))
            if batch == 1 and spec.method == "dopri5":
                attach(rows, lambda r, c=call_s: _overhead(r, c))
            result.rows.extend(rows)
        # torchnode's compiled fixed steps (options['compile']) against the
        # same uncompiled rk4 of torchdiffeq; the warm-up holds the compilation.
        spec = Spec("rk4", 1e-6, 1e-6, {"step_size": 0.01}, compile=True)
        peers = ctx.only(("torchnode", "torchdiffeq"))
        label = f"b={batch} rk4 h=0.01 compiled"
        rows, last = ctx.case("W1", label, field, y0, t, spec, peers)
        attach(rows, lambda r, last=last, exact=exact: _error(r, last, exact))
        result.rows.extend(rows)
        result.notes.append(f"batch {batch}: one field call {call_s * 1e6:.1f} us")
    result.notes.append(
        "overhead_us = (median solve time - NFE x one field call) / NFE"
    )
    result.notes.append(
        "'compiled' cases: torchnode with options['compile']=True; torchdiffeq, "
        "which has no compiled mode, runs its usual rk4 as the reference"
    )
    return result


def _error(row: Row, last: dict, exact: np.ndarray) -> dict:
    final = last[row.library].ys[-1].cpu().numpy()
    return {"max_err": float(np.abs(final - exact).max())}


def _overhead(row: Row, call_s: float) -> dict:
    if row.median_s is None or not row.nfe_forward:
        return {}
    row_time = row.median_s - row.nfe_forward * call_s
    return {"overhead_us": row_time / row.nfe_forward * 1e6}
