"""W4: Van der Pol, mu = 10, against a tight scipy Radau reference."""

from __future__ import annotations

import functools

import numpy as np
import scipy.integrate
import torch

from benchmarks.adapters import Spec
from benchmarks.fields import CountingField, VanDerPol
from benchmarks.results import WorkloadResult
from benchmarks.workloads.common import Context, attach

MU, T_END, Y0 = 10.0, 20.0, (2.0, 0.0)
TITLE = f"Van der Pol mu={MU:g}, t=[0, {T_END:g}], dopri5 rtol=atol=1e-6, float64"


@functools.cache
def reference() -> tuple[float, ...]:
    """y(T_END) from scipy's Radau at rtol = atol = 1e-12 (computed once)."""

    def rhs(_t, y):
        return [y[1], MU * (1 - y[0] ** 2) * y[1] - y[0]]

    sol = scipy.integrate.solve_ivp(
        rhs, (0.0, T_END), Y0, method="Radau", rtol=1e-12, atol=1e-12
    )
    if not sol.success:
        raise RuntimeError(f"reference solve failed: {sol.message}")
    return tuple(float(v) for v in sol.y[:, -1])


def run(ctx: Context) -> WorkloadResult:
    result = WorkloadResult("W4", TITLE)
    field = CountingField(VanDerPol(MU))
    y0 = torch.tensor([Y0], dtype=torch.float64, device=ctx.device)
    t = torch.tensor([0.0, T_END], dtype=torch.float64, device=ctx.device)
    exact = np.array(reference())
    rows, last = ctx.case("W4", "vdp", field, y0, t, Spec("dopri5", 1e-6, 1e-6))

    def error(row) -> dict:
        final = last[row.library].ys[-1, 0].cpu().numpy()
        return {"max_err": float(np.abs(final - exact).max())}

    attach(rows, error)
    result.rows.extend(rows)
    result.notes.append("reference: scipy Radau rtol=atol=1e-12 at t=20")
    return result
