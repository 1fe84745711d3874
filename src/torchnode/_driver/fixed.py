"""The fixed-grid solve loop.

By default the grid is the union of the regular grid of ``step_size`` and the
output times, so every output is a node of the method and is accurate to the
method's order. With ``interp='linear'`` or ``'cubic'`` the grid ignores the
output times (torchdiffeq's behaviour) and outputs between nodes are
interpolated.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch

from .._errors import SolverError
from .._numerics.rk import RKStepper
from .._numerics.tableau import ButcherTableau
from .adaptive import AcceptedStep, RunResult
from .compiled import CompiledChunks, compiled_chunks_for
from .diagnose import describe_non_finite, stability_limit, stiffness_estimate
from .problem import Problem
from .solution import Stats

__all__ = ["build_grid", "integrate_fixed"]

# Grid nodes closer than this fraction of a step to an end or output time merge
# into it, so that no zero-length or negligible step is taken.
_MERGE_FRACTION = 1e-9
# The state is checked for NaN/inf at every output time and every this many
# steps: often enough to stop a blow-up early, rarely enough that the host
# synchronisation it costs stays negligible.
_FINITE_CHECK_EVERY = 32


# Also merged: nodes within this many units of the time dtype's resolution at
# the interval's scale. Output times given in float32 sit up to half an ulp away
# from the float64 grid nodes they name (float32(2.2) = 2.2 + 4.8e-8); without
# this a sliver step of that length would follow.
_MERGE_ULPS = 4.0
# More nodes than this cannot be stepped through in reasonable time (nor held
# as a list); such a grid is a mistake in step_size or t, reported as one.
_MAX_GRID_STEPS = 10**8


def _merge_distance(times: list[float], t_dtype: torch.dtype) -> float:
    scale = max(abs(times[0]), abs(times[-1]))
    return _MERGE_ULPS * torch.finfo(t_dtype).eps * scale


def _regular_grid(t0: float, t1: float, step: float, close: float) -> list[float]:
    direction = 1.0 if t1 >= t0 else -1.0
    n_float = abs(t1 - t0) / step
    if not n_float <= _MAX_GRID_STEPS:
        raise ValueError(
            f"options['step_size'] = {step} needs {n_float:.3g} steps from t = {t0} "
            f"to t = {t1}, more than {_MAX_GRID_STEPS:.0e}; use a larger step_size "
            "or an adaptive method"
        )
    n = math.ceil(n_float)
    nodes = [t0 + k * step * direction for k in range(n)]
    # Drop nodes that round onto or past the end; the end is appended exactly.
    gap = max(_MERGE_FRACTION * step, close)
    nodes = [x for x in nodes if (t1 - x) * direction > gap]
    return [*nodes, t1]


def _merge(
    grid: list[float], outputs: list[float], direction: float, close: float = 0.0
) -> list[float]:
    """Union of grid nodes and output times in the direction of travel."""
    merged = sorted(set(grid) | set(outputs), key=lambda x: x * direction)
    out: list[float] = []
    outs = set(outputs)
    gap = max(_MERGE_FRACTION * abs(merged[-1] - merged[0]), close)
    for x in merged:
        if out and abs(x - out[-1]) <= gap:
            if x in outs:
                out[-1] = x
            continue
        out.append(x)
    return out


def build_grid(problem: Problem) -> list[float]:
    """The nodes of the fixed-grid solve, from ``t[0]`` to ``t[-1]``."""
    opts = problem.options
    times = problem.t
    t0, t1 = times[0], times[-1]
    direction = 1.0 if t1 >= t0 else -1.0
    step = opts.get("step_size")
    close = _merge_distance(times, problem.t_tensor.dtype)
    constructor = opts.get("grid_constructor")
    if step is not None and constructor is not None:
        raise ValueError(
            "give options['step_size'] or options['grid_constructor'], not both"
        )
    if constructor is not None:
        grid_t = constructor(
            problem.field.func, problem.layout.unflatten(problem.y0), problem.t_tensor
        )
        grid = torch.as_tensor(grid_t).detach().to(torch.float64).reshape(-1).tolist()
        if grid[0] != t0 or grid[-1] != t1:
            raise ValueError(
                f"grid_constructor must return a grid from t[0] = {t0} to t[-1] = {t1},"
                f" but got one from {grid[0]} to {grid[-1]}"
            )
        if any((b - a) * direction <= 0 for a, b in itertools.pairwise(grid)):
            raise ValueError("grid_constructor must return a strictly monotonic grid")
    elif step is not None:
        step = float(step)
        if not (math.isfinite(step) and step > 0):
            raise ValueError(f"options['step_size'] must be positive, but got {step}")
        grid = _regular_grid(t0, t1, step, close)
    else:
        grid = [t0, t1]
    if opts.get("interp") is None or (step is None and constructor is None):
        return _merge(grid, times, direction, close)
    return grid


def integrate_fixed(
    problem: Problem,
    tableau: ButcherTableau | None,
    *,
    record_steps: bool = False,
    stepper: Any = None,
) -> RunResult:
    """Solves ``problem`` on a fixed grid with an explicit Runge-Kutta method,
    or with ``stepper`` (an implicit method's, same interface) when given.

    Returns:
        A :class:`RunResult` with the flat outputs at ``problem.t``.
    """
    p = problem
    interp = p.options.get("interp")
    if interp not in (None, "linear", "cubic"):
        raise ValueError(
            f"options['interp'] must be 'linear' or 'cubic', but got {interp!r}"
        )
    perturb = bool(p.options.get("perturb", False))
    times = p.t
    grid = build_grid(p)
    if stepper is None:
        assert tableau is not None
        stepper = RKStepper(tableau, p.y0.dtype, p.y0.device)
    direction = 1.0 if times[-1] >= times[0] else -1.0
    stats = Stats()
    steps: list[AcceptedStep] = []
    y = p.y0
    ys: list[torch.Tensor] = []
    i_out = 0
    n_out = len(times)
    while i_out < n_out and times[i_out] == grid[0]:
        ys.append(y)
        i_out += 1
    n_checked = i_out
    y_checked = y
    nudge = (1 if direction > 0 else -1) if perturb else 0
    t_checked = grid[0]
    field = p.field
    step = stepper.step
    # An explicit stepper writes a non-FSAL method's first stage straight into
    # its buffer; an implicit one has no such entry.
    first_stage = getattr(stepper, "first_stage", None)
    f = p.first_field(grid[0], y, nudge) if p.f0 is not None else None
    n_steps = 0
    # options['compile']: the first step runs as usual (it checks the field's
    # output), then whole chunks of steps through one compiled function where
    # it applies; the steps after the last whole chunk run as usual.
    setting = p.options.get("compile") or False
    chunks: CompiledChunks | None = None
    chunk: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None = None
    j_chunk = 0
    f1: torch.Tensor | None
    for t0, t1 in itertools.pairwise(grid):
        if chunk is None and chunks is not None and chunks.fits(n_steps):
            if chunks.carry_f and f is None:
                f = field(t0, y, nudge)
            chunk, j_chunk = chunks(n_steps, y, f if chunks.carry_f else None), 0
            if chunk is None:
                chunks = None
        if chunk is not None:
            # The chunk's states, the field at each step's start, and (FSAL)
            # the field at its last state.
            chunk_ys, chunk_fs, f_end = chunk
            y1 = chunk_ys[j_chunk]
            f = None if chunk_fs is None else chunk_fs[j_chunk]
            j_chunk += 1
            if j_chunk == chunk_ys.shape[0]:
                f1 = f_end if stepper.fsal else None
                chunk = None
            else:
                f1 = None if chunk_fs is None else chunk_fs[j_chunk]
        else:
            if f is None:
                f = (
                    field(t0, y, nudge)
                    if first_stage is None
                    else first_stage(field, t0, y, nudge)
                )
            res = step(field, t0, t1, y, f, perturb=perturb)
            y1 = res.y1
            f1 = None if perturb else res.f1
            if setting is not False and chunks is None:
                chunks = compiled_chunks_for(
                    field, tableau, grid, perturb, setting, interp == "cubic"
                )
                setting = False
        n_steps += 1
        if record_steps:
            steps.append(AcceptedStep(t0, t1, y.detach(), None, nudge, perturb))
        while i_out < n_out and (times[i_out] - t1) * direction <= 0:
            t_out = times[i_out]
            if t_out == t1:
                ys.append(y1)
            elif interp == "linear":
                w = (t_out - t0) / (t1 - t0)
                ys.append(torch.lerp(y, y1, w))
            else:
                assert f is not None  # set by the step or the chunk (carry_f)
                if f1 is None:
                    f1 = field(t1, y1, -nudge)
                ys.append(_hermite(y, y1, f, f1, t0, t1, t_out))
            i_out += 1
        if i_out > n_checked or n_steps % _FINITE_CHECK_EVERY == 0:
            last_good = [(t_checked, y_checked), (t0, y)]
            _check_finite(p, stepper.tableau, last_good, t1, t1 - t0, y1)
            t_checked, y_checked, n_checked = t1, y1, i_out
        y, f = y1, (None if perturb else f1)
    stats.n_steps = stats.n_accepted = n_steps
    stats.nfe = p.field.nfe
    return RunResult(ys, stats, steps, None, stepper)


def _check_finite(
    p: Problem,
    tableau: ButcherTableau,
    last_good: list[tuple[float, torch.Tensor]],
    t1: float,
    dt: float,
    y1: torch.Tensor,
) -> None:
    """Raises :class:`SolverError` if ``y1`` (the state at ``t1``) is not finite.

    A fixed grid cannot shrink its step, so a NaN or inf would otherwise travel
    silently to every later output.
    """
    bad = describe_non_finite("y", y1)
    if bad is None:
        return
    t_ok = last_good[0][0]
    msg = (
        f"the state became non-finite between t = {t_ok!r} and t = {t1!r} "
        f"(fixed step dt = {dt:.3g}): {bad} at t = {t1!r}."
    )
    name = tableau.name
    limit = stability_limit(tableau)
    rho = math.nan
    with torch.no_grad():
        for t, y in last_good:
            if bool(torch.isfinite(y).all()):
                f = p.field(t, y)
                p.field.nfe -= 1
                r = stiffness_estimate(p.field, t, y, f)
                if math.isfinite(r) and (math.isnan(rho) or r > rho):
                    rho = r
    if limit is not None and math.isfinite(rho) and rho * abs(dt) > limit:
        msg += (
            f" The problem looks stiff: df/dy has an eigenvalue of size ~{rho:.3g},"
            f" beyond {name}'s stability limit {limit:.3g}/{abs(dt):.3g}. Use a step "
            f"below {limit / rho:.3g}, an adaptive or a stiff (implicit) solver."
        )
    else:
        msg += (
            " Use a smaller options['step_size'] or an adaptive method, and check "
            "the field for a singularity or blow-up near this time."
        )
    raise SolverError(msg, t=t1, dt=dt, reason="non_finite")


def _hermite(y0, y1, f0, f1, t0: float, t1: float, t: float) -> torch.Tensor:
    """Cubic Hermite interpolation on ``(y0, f0)`` and ``(y1, f1)``."""
    dt = t1 - t0
    s = (t - t0) / dt
    h00 = (1 + 2 * s) * (1 - s) ** 2
    h10 = s * (1 - s) ** 2
    h01 = s * s * (3 - 2 * s)
    h11 = s * s * (s - 1)
    return h00 * y0 + h10 * dt * f0 + h01 * y1 + h11 * dt * f1
