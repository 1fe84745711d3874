"""Fixed-grid Adams methods: Adams-Bashforth and Adams-Bashforth-Moulton.

``explicit_adams`` of order ``k = max_order`` is the k-step Adams-Bashforth
method. ``implicit_adams`` (also ``fixed_adams``) predicts with the
(k-1)-step Adams-Bashforth formula (Euler for k = 1) and corrects with the
order-k Adams-Moulton formula, iterated at most ``max_iters`` times
(P(EC)^m E); each correction raises the predictor's order by one, so the method
has order k for any ``max_iters >= 1``. Iteration stops early once successive
corrections agree to rtol/atol (torchdiffeq's rule), so the corrector adds an
error of the order of the tolerance: keep rtol/atol below the accuracy the grid
is meant to reach.

Coefficients are the integrals of the Lagrange basis on the actual past nodes
(Hairer, Norsett and Wanner I, III.5, variable step size), so the methods keep
their order on non-uniform grids (output times merged into the grid, a
``grid_constructor``); on a uniform grid they are the classical coefficients.

Start-up: the first ``k - 1`` steps (explicit) or ``k - 2`` steps (implicit)
are taken with the classical fourth-order Runge-Kutta method, which fills the
history without lowering the order (for ``max_order <= 4``; beyond that its
few local errors of O(h^5) cap the global order at 4 on fine grids).
torchdiffeq instead starts with two steps of RK4's 3/8 rule and then raises the
order by one per step up to its ``max_order`` (default 12), and for
``max_order < 4`` it takes RK4 steps throughout; these methods do not
reproduce that schedule.
"""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np
import torch

from .._driver.adaptive import RunResult
from .._driver.fixed import _hermite, build_grid
from .._driver.problem import Problem
from .._driver.solution import Stats
from .._errors import StiffnessWarning
from .._warn import warn
from .norms import scaled_error
from .rk import RKStepper
from .tableaus import TABLEAUS

__all__ = ["ADAMS_METHODS", "MAX_ORDER"]

MAX_ORDER = 12
DEFAULT_MAX_ORDER = 4
DEFAULT_MAX_ITERS = 4


def _weights(nodes: list[float], t0: float, t1: float) -> np.ndarray:
    """``w`` with ``int_{t0}^{t1} p(s) ds = (t1 - t0) sum_j w_j p(nodes_j)`` for
    every polynomial ``p`` of degree ``< len(nodes)``."""
    h = t1 - t0
    x = (np.asarray(nodes, dtype=np.float64) - t0) / h
    n = len(x)
    g, a = np.polynomial.legendre.leggauss(max(1, (n + 1) // 2 + 1))
    g = 0.5 * (g + 1.0)
    a = 0.5 * a
    w = np.empty(n)
    for j in range(n):
        others = np.delete(x, j)
        basis = np.prod((g[:, None] - others) / (x[j] - others), axis=1)
        w[j] = float(a @ basis)
    return w


def _options(problem: Problem) -> tuple[int, int]:
    opts = problem.options
    order = opts.get("max_order", DEFAULT_MAX_ORDER)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        raise TypeError(
            f"options['max_order'] must be an int from 1 to {MAX_ORDER}, but got "
            f"{order!r}"
        )
    if not 1 <= order <= MAX_ORDER:
        raise ValueError(
            f"options['max_order'] must be from 1 to {MAX_ORDER}, but got {order}"
        )
    iters = opts.get("max_iters", DEFAULT_MAX_ITERS)
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)):
        raise TypeError(
            f"options['max_iters'] must be a positive int, but got {iters!r}"
        )
    if iters < 1:
        raise ValueError(f"options['max_iters'] must be at least 1, but got {iters}")
    interp = opts.get("interp")
    if interp not in (None, "linear", "cubic"):
        raise ValueError(
            f"options['interp'] must be 'linear' or 'cubic', but got {interp!r}"
        )
    return int(order), int(iters)


def _combine(y0: torch.Tensor, h: float, fs, w: np.ndarray) -> torch.Tensor:
    wt = torch.as_tensor(w, dtype=torch.float64).to(dtype=y0.real.dtype)
    wt = wt.to(device=y0.device, dtype=y0.dtype)
    return torch.addmv(y0, torch.stack(list(fs), 1), wt, alpha=h)


def _integrate(
    problem: Problem, implicit: bool, record_steps: bool = False
) -> RunResult:
    name = "implicit_adams" if implicit else "explicit_adams"
    if record_steps:
        raise ValueError(
            f"gradient='checkpoint' is not available with {name!r}: a multistep "
            "method cannot be recomputed one step at a time from a stored state, "
            "as checkpointing requires. Use gradient='direct' or 'adjoint'."
        )
    order, max_iters = _options(problem)
    p = problem
    field = p.field
    interp = p.options.get("interp")
    perturb = bool(p.options.get("perturb", False))
    times = p.t
    grid = build_grid(p)
    direction = 1.0 if times[-1] >= times[0] else -1.0
    nudge = (1 if direction > 0 else -1) if perturb else 0
    n_hist = max(order - 1, 1) if implicit else order
    starter = RKStepper(TABLEAUS["rk4"], p.y0.dtype, p.y0.device)
    stats = Stats()
    hist_f: deque[torch.Tensor] = deque(maxlen=n_hist)
    hist_t: deque[float] = deque(maxlen=n_hist)
    y = p.y0
    ys: list[torch.Tensor] = []
    n_out = len(times)
    i_out = 0
    while i_out < n_out and times[i_out] == grid[0]:
        ys.append(y)
        i_out += 1
    diverged = False
    for t0, t1 in itertools.pairwise(grid):
        h = t1 - t0
        f0 = p.first_field(t0, y, nudge)
        hist_f.appendleft(f0)
        hist_t.appendleft(t0)
        if len(hist_f) < n_hist:
            y1 = starter.step(field, t0, t1, y, f0, perturb=perturb).y1
        else:
            nodes = list(hist_t)
            y1 = _combine(y, h, hist_f, _weights(nodes, t0, t1))
            if implicit:
                past = list(hist_f)[: order - 1]
                w = _weights([t1, *nodes[: order - 1]], t0, t1)
                base = _combine(y, h, past, w[1:]) if past else y
                y1, bad = _correct(p, base, y1, h * float(w[0]), t1, max_iters, nudge)
                diverged = diverged or bad
        stats.n_steps += 1
        stats.n_accepted += 1
        f1 = None
        while i_out < n_out and (times[i_out] - t1) * direction <= 0:
            t_out = times[i_out]
            if t_out == t1:
                ys.append(y1)
            elif interp == "linear":
                ys.append(torch.lerp(y, y1, (t_out - t0) / h))
            else:
                if f1 is None:
                    f1 = field(t1, y1, -nudge)
                ys.append(_hermite(y, y1, f0, f1, t0, t1, t_out))
            i_out += 1
        y = y1
    if diverged:
        warn(
            f"the corrector iteration of {name!r} diverged on some steps: the step "
            "is too large for the problem's stiffness. Lower options['step_size'] "
            "or use a stiff solver.",
            StiffnessWarning,
        )
    stats.nfe = field.nfe
    return RunResult(ys, stats, [], None, None)


def _correct(p: Problem, base, y1, hw: float, t1: float, max_iters: int, nudge):
    """Iterates ``y1 = base + hw f(t1, y1)``; returns ``y1`` and whether the
    corrections grew instead of shrinking (the iteration diverges)."""
    first = last = None
    for _ in range(max_iters):
        y_new = base + hw * p.field(t1, y1, -nudge)
        with torch.no_grad():
            change = float(p.norm(scaled_error(y1, y_new, y_new - y1, p.rtol, p.atol)))
        y1 = y_new
        if first is None:
            first = change
        last = change
        if change <= 1.0:
            break
    diverged = first is not None and last is not None and last > first > 1.0
    return y1, diverged


def integrate_explicit(problem: Problem, record_steps: bool = False) -> RunResult:
    """Adams-Bashforth of order ``options['max_order']`` on the fixed grid."""
    return _integrate(problem, False, record_steps)


def integrate_implicit(problem: Problem, record_steps: bool = False) -> RunResult:
    """Adams-Bashforth-Moulton of order ``options['max_order']`` on the grid."""
    return _integrate(problem, True, record_steps)


ADAMS_METHODS = {
    "explicit_adams": integrate_explicit,
    "implicit_adams": integrate_implicit,
    "fixed_adams": integrate_implicit,
}
