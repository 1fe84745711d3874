"""rodas4 against scipy's Radau, BDF and LSODA on stiff test problems.

Run as ``python -m benchmarks.stiff`` (``--batch`` adds 256 independent Robertson
problems solved as one system). Prints, per problem and tolerance, the largest
relative error at the end point against a tight scipy Radau reference, steps,
field evaluations, Jacobians, LU factorisations and wall time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.integrate import solve_ivp

import torchnode

HIRES = (
    "-1.71*y1+0.43*y2+8.32*y3+0.0007, 1.71*y1-8.75*y2, -10.03*y3+0.43*y4+0.035*y5, "
    "8.32*y2+1.71*y3-1.12*y4, -1.745*y5+0.43*y6+0.43*y7, "
    "-280*y6*y8+0.69*y4+1.71*y5-0.43*y6+0.69*y7, 280*y6*y8-1.81*y7, "
    "-280*y6*y8+1.81*y7"
)
_HIRES_CODE = compile("[" + HIRES + "]", "hires", "eval")


def rob_np(t, y):
    return [
        -0.04 * y[0] + 1e4 * y[1] * y[2],
        0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2,
        3e7 * y[1] ** 2,
    ]


def rob_t(t, y):
    y1, y2, y3 = y.unbind(-1)
    return torch.stack(
        [
            -0.04 * y1 + 1e4 * y2 * y3,
            0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 * y2,
            3e7 * y2 * y2,
        ],
        -1,
    )


def vdp_np(t, y):
    return [y[1], 1000.0 * (1 - y[0] ** 2) * y[1] - y[0]]


def vdp_t(t, y):
    return torch.stack([y[1], 1000.0 * (1 - y[0] ** 2) * y[1] - y[0]])


def hires_np(t, y):
    names = dict(zip(("y1", "y2", "y3", "y4", "y5", "y6", "y7", "y8"), y))
    return eval(_HIRES_CODE, {}, names)


def hires_t(t, y):
    names = dict(zip(("y1", "y2", "y3", "y4", "y5", "y6", "y7", "y8"), y.unbind(-1)))
    return torch.stack(eval(_HIRES_CODE, {}, names), -1)


# End points from scipy Radau at rtol 1e-10..1e-12, atol 1e-14. The stiff-solver
# tests take their problems and references from here.
PROBLEMS = {
    "robertson": (
        rob_np,
        rob_t,
        [1.0, 0.0, 0.0],
        1e5,
        [0.017865921142252442, 7.274751468499725e-08, 0.9821340061102334],
        1e-4,
    ),
    "vdp1000": (
        vdp_np,
        vdp_t,
        [2.0, 0.0],
        1000.0,
        [-1.863646254808142, 0.0007535430865435375],
        1e-2,
    ),
    "hires": (
        hires_np,
        hires_t,
        [1, 0, 0, 0, 0, 0, 0, 0.0057],
        321.8122,
        [
            0.0007371312573325112,
            0.0001442485726316075,
            5.888729740966552e-05,
            0.0011756513432830441,
            0.002386356198829717,
            0.006238968252737832,
            0.00284999839518459,
            0.002850001604815429,
        ],
        1e-4,
    ),
}


def _err(y, ref) -> float:
    ref = np.asarray(ref)
    return float(np.max(np.abs(np.asarray(y) - ref) / np.abs(ref)))


def run(rtols, batch: bool) -> None:
    f64 = torch.float64
    for name, (fn, ft, y0, t_end, ref, atol_factor) in PROBLEMS.items():
        for rtol in rtols:
            atol = rtol * atol_factor
            start = time.perf_counter()
            sol = torchnode.solve(
                ft,
                torch.tensor(y0, dtype=f64),
                torch.tensor([0.0, t_end], dtype=f64),
                method="rodas4",
                rtol=rtol,
                atol=atol,
            )
            wall = time.perf_counter() - start
            st = sol.stats
            print(
                f"{name:9s} rodas4 rtol={rtol:.0e} err={_err(sol.ys[-1], ref):.2e} "
                f"steps={st.n_steps} nfe={st.nfe} njev={st.n_jac} nlu={st.n_lu} "
                f"time={wall:.2f}s"
            )
            for method in ("Radau", "BDF", "LSODA"):
                start = time.perf_counter()
                r = solve_ivp(fn, (0, t_end), y0, method=method, rtol=rtol, atol=atol)
                wall = time.perf_counter() - start
                print(
                    f"{name:9s} {method:6s} rtol={rtol:.0e} "
                    f"err={_err(r.y[:, -1], ref):.2e} steps={len(r.t) - 1} "
                    f"nfe={r.nfev} njev={r.njev} nlu={r.nlu} time={wall:.2f}s"
                )
    if batch:
        n = 256
        y0 = torch.tensor([1.0, 0.0, 0.0], dtype=f64).repeat(n, 1)
        y0[:, 0] *= torch.linspace(0.5, 1.5, n, dtype=f64)
        t = torch.tensor([0.0, 1e5], dtype=f64)
        start = time.perf_counter()
        sol = torchnode.solve(rob_t, y0, t, method="rodas4", rtol=1e-6, atol=1e-10)
        st = sol.stats
        print(
            f"robertson x{n} rodas4 (one {3 * n}-dim system) steps={st.n_steps} "
            f"nfe={st.nfe} njev={st.n_jac} time={time.perf_counter() - start:.2f}s"
        )
        start = time.perf_counter()
        for i in range(n):
            solve_ivp(
                rob_np, (0, 1e5), y0[i].tolist(), method="Radau", rtol=1e-6, atol=1e-10
            )
        print(
            f"robertson x{n} scipy Radau, one by one: "
            f"time={time.perf_counter() - start:.2f}s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="rtol 1e-6 only")
    parser.add_argument("--batch", action="store_true", help="add the 256 batch")
    args = parser.parse_args()
    run([1e-6] if args.quick else [1e-4, 1e-6, 1e-8], args.batch)


if __name__ == "__main__":
    main()
