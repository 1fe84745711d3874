"""Per-sample against shared step control on a batch of Van der Pol oscillators.

    python -m benchmarks.per_sample [--batch 256] [--t1 10] [--reps 3]

A batch of oscillators with mu drawn uniformly from [1, 20] (seeded). torchnode's
shared-step solve, torchnode's per-sample solve and torchode (one step size per
row) run interleaved in one process; the table gives median wall time, field
calls (each a call on the whole batch) and the mean steps per sample.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import torchnode


class VanDerPol(torch.nn.Module):
    """``x' = v``, ``v' = mu (1 - x^2) v - x`` for a batch ``[B, 2]``."""

    def __init__(self, mu: torch.Tensor) -> None:
        super().__init__()
        self.mu = mu
        self.calls = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, self.mu * (1 - x * x) * v - x], dim=1)


def _shared(field, y0, t1, tol):
    sol = torchnode.solve(
        field, y0, torch.tensor([0.0, t1], dtype=y0.dtype), rtol=tol, atol=tol
    )
    return sol.ys[-1], float(sol.stats.n_steps)


def _per_sample(field, y0, t1, tol):
    t = torch.tensor([0.0, t1], dtype=y0.dtype).expand(y0.shape[0], 2)
    sol = torchnode.solve(field, y0, t, rtol=tol, atol=tol)
    return sol.ys[:, -1], float(sol.stats.n_steps.double().mean())


def _torchode(field, y0, t1, tol):
    import torchode as to

    term = to.ODETerm(field)
    control = to.IntegralController(atol=tol, rtol=tol, term=term)
    solver = to.AutoDiffAdjoint(to.Dopri5(term=term), control)
    t_eval = torch.tensor([0.0, t1], dtype=y0.dtype).expand(y0.shape[0], 2)
    sol = solver.solve(to.InitialValueProblem(y0=y0, t_eval=t_eval))
    return sol.ys[:, -1], float(sol.stats["n_steps"].double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--t1", type=float, default=10.0)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    mu = 1 + 19 * torch.rand(args.batch, generator=gen, dtype=torch.float64)
    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64).repeat(args.batch, 1)
    runs = {"torchnode shared": _shared, "torchnode per_sample": _per_sample}
    try:
        import torchode  # noqa: F401

        runs["torchode"] = _torchode
    except ImportError:
        pass
    times: dict[str, list[float]] = {name: [] for name in runs}
    info: dict[str, tuple[int, float, torch.Tensor]] = {}
    with torch.no_grad():
        for rep in range(args.reps + 1):
            for name, run in runs.items():
                field = VanDerPol(mu)
                start = time.perf_counter()
                y1, steps = run(field, y0, args.t1, args.tol)
                if rep > 0:
                    times[name].append(time.perf_counter() - start)
                info[name] = (field.calls, steps, y1)
    ref = info["torchnode per_sample"][2]
    print(f"{args.batch} Van der Pol oscillators, mu in [1, 20], t in [0, {args.t1}],")
    print(f"dopri5 rtol = atol = {args.tol}; median of {args.reps} runs")
    print(
        f"{'solver':22} {'time s':>8} {'field calls':>12} {'steps/sample':>13} "
        f"{'max diff':>9}"
    )
    for name in runs:
        calls, steps, y1 = info[name]
        diff = float((y1 - ref).abs().max())
        med = statistics.median(times[name])
        print(f"{name:22} {med:8.3f} {calls:12d} {steps:13.1f} {diff:9.1e}")


if __name__ == "__main__":
    main()
