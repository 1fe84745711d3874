"""W5: gradient accuracy of adjoint/checkpoint against tight direct backprop."""

from __future__ import annotations

import torch

from benchmarks.adapters import Spec
from benchmarks.fields import CountingField, MLPField
from benchmarks.results import Row, WorkloadResult
from benchmarks.runner import make_run
from benchmarks.workloads.common import Context, attach, rel_error

TITLE = "MLP 8-32-32-8 tanh, batch 16, float64, t=[0, 1]; gradient of sum(y(1)**2)"
FWD_TOL, REF_TOL = 1e-8, 1e-12
ADJ_TOLS = (1e-4, 1e-6, 1e-8)


def problem(device: str):
    field = CountingField(MLPField([8, 32, 32, 8], seed=0)).double().to(device)
    gen = torch.Generator().manual_seed(1)
    y0 = torch.randn(16, 8, generator=gen, dtype=torch.float64).to(device)
    return field, y0, torch.tensor([0.0, 1.0], dtype=torch.float64, device=device)


def reference_grads(ctx: Context, field, y0, t) -> tuple[list[torch.Tensor], str]:
    spec = Spec("dopri5", REF_TOL, REF_TOL, mode="direct")
    order = ctx.only(("torchdiffeq",)) + ctx.adapters
    for adapter in order:
        if adapter.unsupported(spec) is None:
            return make_run(adapter, field, y0, t, spec)().grads, adapter.name
    raise RuntimeError("no library can compute the reference gradient")


def _specs() -> list[tuple[str, Spec]]:
    fwd = (FWD_TOL, FWD_TOL)
    specs = [("direct", Spec("dopri5", *fwd, mode="direct"))]
    specs.append(("checkpoint", Spec("dopri5", *fwd, mode="checkpoint")))
    for tol in ADJ_TOLS:
        spec = Spec("dopri5", *fwd, mode="adjoint", adjoint_rtol=tol, adjoint_atol=tol)
        specs.append((f"adjoint tol={tol:g}", spec))
    return specs


def run(ctx: Context) -> WorkloadResult:
    result = WorkloadResult("W5", f"{TITLE}; forward rtol=atol={FWD_TOL:g}")
    field, y0, t = problem(ctx.device)
    ref, ref_lib = reference_grads(ctx, field, y0, t)

    def err(row: Row, last) -> dict:
        return {"grad_rel_err": rel_error(last[row.library].grads, ref)}

    for label, spec in _specs():
        rows, last = ctx.case("W5", label, field, y0, t, spec)
        attach(rows, lambda r, last=last: err(r, last))
        result.rows.extend(rows)
    torchode = ctx.only(("torchode",))
    for tol in [tol for tol in ADJ_TOLS if tol != FWD_TOL]:
        spec = Spec("dopri5", tol, tol, mode="adjoint")
        rows, last = ctx.case(
            "W5", f"adjoint fwd=bwd tol={tol:g}", field, y0, t, spec, torchode
        )
        attach(rows, lambda r, last=last: err(r, last))
        result.rows.extend(rows)
    result.notes.append(
        f"reference: {ref_lib} direct backprop at rtol=atol={REF_TOL:g}; "
        "grad_rel_err = |g - g_ref| / |g_ref| over all parameters"
    )
    result.notes.append(
        "torchode's BacksolveAdjoint uses one controller for both directions, so its "
        "adjoint rows solve forward and backward at the adjoint tolerance"
    )
    return result
