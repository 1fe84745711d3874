"""W2-hard: longer horizon and larger weights; adjoint full norm vs seminorm."""

from __future__ import annotations

import torch

from benchmarks.adapters import Spec
from benchmarks.results import WorkloadResult
from benchmarks.workloads.common import Context, attach, rel_error
from benchmarks.workloads.w2 import mlp_problem

TITLE = "W2 field with weights x3, t=[0, 10]; adjoint norm vs seminorm"
VARIANTS = (
    ("direct", Spec("dopri5", 1e-5, 1e-7, mode="direct")),
    ("adjoint full", Spec("dopri5", 1e-5, 1e-7, mode="adjoint")),
    ("adjoint seminorm", Spec("dopri5", 1e-5, 1e-7, mode="adjoint", seminorm=True)),
)


def run(ctx: Context) -> WorkloadResult:
    batch = 32 if ctx.quick else 512
    result = WorkloadResult("W2-hard", f"{TITLE}, batch {batch}, float32")
    field, y0 = mlp_problem(batch, ctx.device, scale=3.0)
    t = torch.tensor([0.0, 10.0], device=ctx.device)
    adapters = ctx.only(("torchnode", "torchdiffeq"))
    direct: dict[str, list[torch.Tensor]] = {}
    for label, spec in VARIANTS:
        rows, last = ctx.case("W2-hard", label, field, y0, t, spec, adapters)
        for row in rows:
            if spec.mode == "direct" and row.error is None:
                direct[row.library] = last[row.library].grads

        def grad_err(row, last=last) -> dict:
            ref = direct.get(row.library)
            return (
                {"grad_rel_err": rel_error(last[row.library].grads, ref)} if ref else {}
            )

        attach(rows, grad_err)
        result.rows.extend(rows)
    result.notes.append(
        "grad_rel_err: |g - g_direct| / |g_direct|, g_direct = the same library's "
        "direct backprop at the same tolerances"
    )
    result.notes.append("seminorm: adjoint_options={'norm': 'seminorm'}")
    return result
