"""Terminal events: stop a solve where an event function changes sign.

The search runs the ordinary solve loop with no end time. After each accepted
step the event function is sampled on the step's continuous extension at
``_SAMPLES - 1`` interior points and the end point, so that a step which carries
the event function across zero and back (two roots in one step) still shows a
sign change. The first sub-interval with a change is refined by the Illinois
variant of regula falsi on the interpolant, to a tolerance relative to the step
length (so events on any time scale are located to the same relative accuracy).
With a vector-valued event function the earliest component to cross wins.

``odeint(..., event_fn=...)`` returns, like torchdiffeq, the event time without
a gradient and the state there, differentiable at that fixed time.
:func:`odeint_event` adds the gradient of the event time by the implicit
function theorem: with ``g(t_e, y(t_e; theta); theta) = 0``::

    dt_e/dtheta = -(dg/dtheta + dg/dy . dy/dtheta) / (dg/dt + dg/dy . f)

and the state at the event moves with it, ``dy_e = dy + f dt_e``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._api import GRADIENT_MODES, _prepare, odeint, solve
from ._driver.methods import MethodSpec, run_problem
from ._driver.problem import Problem
from ._errors import SolverError
from ._numerics.rk import RKStepper
from ._warn import warn

__all__ = ["odeint_event", "odeint_with_event"]

# Bound on the steps of a search with no end time (options['max_num_steps']
# overrides it).
DEFAULT_EVENT_MAX_STEPS = 20_000
# Each accepted step is cut into this many equal parts for sign sampling.
_SAMPLES = 8
# Root tolerance: a few ulps of the root, and at least this fraction of the step
# length. A step may be far longer than the time to the event (a problem whose
# solution the method integrates exactly takes huge steps), so the fraction is
# small enough that the root is still located to ~1e-9 relative accuracy when
# the step is 1e7 times the event time.
_REL_TOL = 1e-16
_MAX_REFINE = 200

Interp = Callable[[list[float]], torch.Tensor]


class _EventSearch:
    """Watches the sign of ``event_fn`` along the accepted steps of one solve."""

    def __init__(self, event_fn: Callable, problem: Problem, t0: float, y0) -> None:
        self.event_fn = event_fn
        self.field = problem.field
        self.layout = problem.layout
        self.prev = self.values(t0, y0)
        self.n_components = self.prev.numel()
        self.t_event: float | None = None
        self.y_event: torch.Tensor | None = None
        self.stepper: RKStepper | None = None

    def values(self, t: float, y: torch.Tensor) -> torch.Tensor:
        """Event function at ``(t, y)``, flat float64 on the host."""
        with torch.no_grad():
            out = self.event_fn(self.field.time(t), self.layout.unflatten(y))
            out = torch.as_tensor(out).detach()
        if out.is_complex():
            raise TypeError(
                f"event_fn must return real values, but got dtype {out.dtype}"
            )
        return out.reshape(-1).to(device="cpu", dtype=torch.float64)

    def check(
        self, t0: float, t1: float, y1: torch.Tensor, interp: Interp
    ) -> float | None:
        """The event time inside ``(t0, t1]``, or ``None``; remembers the state."""
        if not math.isfinite(t1):
            raise SolverError(
                f"no event was found before the time overflowed (t = {t1!r}); the "
                "event function may never change sign. Check event_fn, or solve "
                "without it up to a finite time.",
                t=t0,
                dt=t1 - t0,
                reason="event_search",
            )
        h = t1 - t0
        inner = [t0 + h * j / _SAMPLES for j in range(1, _SAMPLES)]
        with torch.no_grad():
            ys = interp(inner) if inner else y1.new_empty((0, y1.numel()))
        nodes = [*inner, t1]
        states = [*ys.unbind(0), y1]
        ta, ga = t0, self.prev
        for tb, yb in zip(nodes, states):
            gb = self.values(tb, yb)
            crossed = ((ga > 0) & (gb <= 0)) | ((ga < 0) & (gb >= 0))
            if bool(crossed.any()):
                t_event = self._earliest(ta, tb, ga, gb, crossed, interp, abs(h))
                self.t_event = t_event
                self.y_event = y1 if t_event == t1 else interp([t_event])[0]
                return t_event
            ta, ga = tb, gb
        self.prev = ga
        return None

    def _earliest(self, ta, tb, ga, gb, crossed, interp: Interp, h: float) -> float:
        best: float | None = None
        direction = 1.0 if tb > ta else -1.0
        for i in torch.nonzero(crossed).reshape(-1).tolist():
            root = self._refine(i, ta, tb, float(ga[i]), float(gb[i]), interp, h)
            if best is None or (root - best) * direction < 0:
                best = root
        assert best is not None
        return best

    def _refine(
        self, i: int, ta: float, tb: float, ga: float, gb: float, interp: Interp, h
    ) -> float:
        """Root of component ``i`` in ``(ta, tb]``; returns the crossed side."""
        sign_a = 1.0 if ga > 0 else -1.0
        side = 0
        for it in range(_MAX_REFINE):
            tol = max(_REL_TOL * h, 4.0 * math.ulp(max(abs(ta), abs(tb))))
            if gb == 0.0 or abs(tb - ta) <= tol:
                break
            if it % 4 == 3 or ga == gb:
                tc = 0.5 * (ta + tb)
            else:
                tc = ta + (tb - ta) * ga / (ga - gb)
                if not min(ta, tb) < tc < max(ta, tb):
                    tc = 0.5 * (ta + tb)
            if tc in (ta, tb):
                break
            with torch.no_grad():
                gc = float(self.values(tc, interp([tc])[0])[i])
            if gc * sign_a > 0:
                ta, ga = tc, gc
                if side == -1:
                    gb *= 0.5
                side = -1
            else:
                tb, gb = tc, gc
                if side == 1:
                    ga *= 0.5
                side = 1
        return tb

    def __call__(self, t0, t1, y0, y1, stages_fn) -> float | None:
        """The adaptive loop's event hook."""
        stepper = self.stepper
        assert stepper is not None

        def interp(ts: list[float]) -> torch.Tensor:
            stages = stages_fn()
            return torch.stack([stepper.dense(y0, stages, t0, t1, t) for t in ts])

        return self.check(t0, t1, y1, interp)


def _search_adaptive(
    spec: MethodSpec, problem: Problem, search: _EventSearch, direction: float
):
    t0 = problem.t[0]
    opts = dict(problem.options)
    opts.setdefault("max_num_steps", DEFAULT_EVENT_MAX_STEPS)
    open_ended = dataclasses.replace(
        problem, t=[t0, direction * math.inf], options=opts
    )
    assert spec.tableau is not None
    # Same tableau, dtype and device as the loop's stepper: the same interpolant.
    search.stepper = RKStepper(spec.tableau, problem.y0.dtype, problem.y0.device)
    try:
        run_problem(spec, open_ended, event_hook=search)
    except SolverError as err:
        if err.reason != "max_num_steps":
            raise
        raise SolverError(
            f"no event was found in {opts['max_num_steps']} steps (reached t = "
            f"{err.t!r} from t0 = {t0!r}). Raise options['max_num_steps'] if the "
            "event lies further on, or check that event_fn changes sign.",
            t=err.t,
            dt=err.dt,
            reason="event_search",
        ) from None


def _search_fixed(
    spec: MethodSpec, problem: Problem, search: _EventSearch, direction: float
) -> None:
    """Fixed steps of ``options['step_size']`` until the event; cubic Hermite
    interpolation between the nodes."""
    from ._driver.fixed import _hermite

    step = problem.options.get("step_size")
    if step is None:
        raise ValueError(
            f"events with the fixed-grid method {spec.name!r} need "
            "options['step_size'] (there is no end time to build a grid from); "
            "give one, or use an adaptive method such as 'dopri5'"
        )
    step = float(step)
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"options['step_size'] must be positive, but got {step}")
    max_steps = int(problem.options.get("max_num_steps", DEFAULT_EVENT_MAX_STEPS))
    assert spec.tableau is not None
    stepper = RKStepper(spec.tableau, problem.y0.dtype, problem.y0.device)
    field = problem.field
    t0 = problem.t[0]
    y = problem.y0
    f = field(t0, y)
    for k in range(max_steps):
        ta = t0 + k * step * direction
        tb = t0 + (k + 1) * step * direction
        res = stepper.step(field, ta, tb, y, f)
        y1 = res.y1
        f1 = res.f1 if res.f1 is not None else field(tb, y1)

        def interp(ts, ya=y, yb=y1, fa=f, fb=f1, ta=ta, tb=tb) -> torch.Tensor:
            return torch.stack([_hermite(ya, yb, fa, fb, ta, tb, t) for t in ts])

        if search.check(ta, tb, y1, interp) is not None:
            return
        y, f = y1, f1
    raise SolverError(
        f"no event was found in {max_steps} steps of size {step} from t0 = {t0!r}. "
        "Raise options['max_num_steps'] if the event lies further on, or check "
        "that event_fn changes sign.",
        t=t0 + max_steps * step * direction,
        dt=step,
        reason="event_search",
    )


def _search(spec: MethodSpec, problem: Problem, search: _EventSearch, direction):
    if spec.tableau is None:
        raise ValueError(
            f"events are not supported with method {spec.name!r}; use an "
            "explicit Runge-Kutta method such as 'dopri5' or 'rk4'"
        )
    if spec.adaptive:
        _search_adaptive(spec, problem, search, direction)
    else:
        _search_fixed(spec, problem, search, direction)


def odeint_with_event(
    func: Callable,
    y0,
    t: torch.Tensor,
    *,
    rtol=1e-7,
    atol=1e-9,
    method=None,
    options: dict[str, Any] | None = None,
    event_fn: Callable,
    gradient: str = "direct",
):
    """Solves from ``t[0]`` until ``event_fn(t, y)`` changes sign.

    Only ``t[0]`` and the direction ``t[1] - t[0]`` are used (torchdiffeq's
    rule; ``t`` must hold two times). Returns ``(event_t, ys)``: ``event_t`` a
    0-dim tensor of ``t``'s dtype, without gradient; ``ys`` the states at
    ``t[0]`` and at the event, ``[2, *y0.shape]`` (a tuple for tuple states),
    differentiable by ``gradient`` ('direct', 'adjoint' or 'checkpoint') at the
    fixed event time. Use :func:`torchnode.odeint_event` for the gradient of the
    event time itself.

    Raises:
        SolverError: no event within the step budget (``reason='event_search'``).
    """
    if gradient not in GRADIENT_MODES:
        raise ValueError(
            f"gradient must be one of {', '.join(GRADIENT_MODES)}, but got {gradient!r}"
        )
    if not callable(event_fn):
        raise TypeError(f"event_fn must be callable as event_fn(t, y), got {event_fn}")
    if isinstance(t, torch.Tensor) and t.ndim == 1 and t.numel() != 2:
        raise ValueError(
            "with event_fn, t must hold exactly 2 times (the start, and a second "
            f"time that only gives the direction), but got {t.numel()}"
        )
    spec, problem = _prepare(func, y0, t, rtol, atol, method, options)
    t0, t1 = problem.t
    if t1 == t0:
        raise ValueError(
            f"with event_fn, t[1] must differ from t[0] = {t0} to give the "
            "direction of the search"
        )
    direction = 1.0 if t1 > t0 else -1.0
    t_tensor = problem.t_tensor
    direct = gradient == "direct" or not torch.is_grad_enabled()
    y_start = problem.y0
    # The first output is y0 itself, which does not move with t0: it bypasses
    # the start-time node, whose term belongs to what the solve carries on.
    y_first = y_start
    if direct and t_tensor.requires_grad:
        from ._gradients.time_grad import _TimeAtStart

        with torch.no_grad():
            f0 = problem.field(t0, y_start.detach())
        y_start = _TimeAtStart.apply(y_start, t_tensor[0], f0)
        problem = dataclasses.replace(problem, y0=y_start)
    search = _EventSearch(event_fn, problem, t0, problem.y0)
    if direct:
        _search(spec, problem, search, direction)
    else:
        with torch.no_grad():
            _search(spec, problem, search, direction)
    t_event = search.t_event
    assert t_event is not None and search.y_event is not None
    event_t = torch.tensor(t_event, dtype=t_tensor.dtype, device=t_tensor.device)
    if direct:
        ys = torch.stack([y_first, search.y_event])
        return event_t, problem.layout.unflatten_batch(ys)
    # Re-solve to the event time in the requested gradient mode.
    t_pair = torch.cat([t_tensor[:1], event_t.reshape(1)])
    sol = solve(
        func,
        y0,
        t_pair,
        method=method,
        rtol=rtol,
        atol=atol,
        options=options,
        gradient=gradient,
    )
    return event_t, sol.ys


# -- the gradient of the event time -----------------------------------------


def _parts(y) -> tuple[list[torch.Tensor], bool]:
    if isinstance(y, torch.Tensor):
        return [y], False
    return list(y), True


def _pack(parts: Sequence[torch.Tensor], is_tuple: bool):
    return tuple(parts) if is_tuple else parts[0]


def _active_component(event_fn, t0, y0, t_event, state) -> int:
    """Index of the component that stopped the solve: the smallest of
    ``g_i * sign(g_i(t0, y0))`` at the event (torchdiffeq's combination)."""
    with torch.no_grad():
        g0 = torch.as_tensor(event_fn(t0, y0)).reshape(-1)
        g = torch.as_tensor(event_fn(t_event, state)).reshape(-1)
        if g.numel() == 1:
            return 0
        s0 = torch.sign(g0)
        s0 = torch.where(s0 == 0, torch.ones_like(s0), s0)
        return int(torch.argmin(g * s0))


def event_time_gradient(func, event_fn, t0, y0, event_t, state):
    """Attaches the implicit-function gradient to ``(event_t, state)``.

    ``state`` carries the gradient of the solution at the fixed time
    ``event_t``; the returned pair has the same values and the total derivative
    of the event time and of the state at the (moving) event.
    """
    if not torch.is_grad_enabled():
        return event_t, state
    parts, is_tuple = _parts(state)
    t_fix = event_t.detach()
    detached = [p.detach() for p in parts]
    i = _active_component(event_fn, t0, y0, t_fix, _pack(detached, is_tuple))
    with torch.enable_grad():
        tt = t_fix.clone().requires_grad_()
        yy = [p.clone().requires_grad_() for p in detached]
        g_i = torch.as_tensor(event_fn(tt, _pack(yy, is_tuple))).reshape(-1)[i]
        grads = torch.autograd.grad(g_i, [tt, *yy], allow_unused=True)
        with torch.no_grad():
            f = func(t_fix, _pack(detached, is_tuple))
        f_parts, _ = _parts(f)
        den = torch.zeros((), dtype=torch.float64, device=t_fix.device)
        if grads[0] is not None:
            den = den + grads[0].to(torch.float64)
        for gy, fp in zip(grads[1:], f_parts):
            if gy is not None:
                den = den + (gy * fp.detach()).sum().to(torch.float64)
        den_value = float(den)
        if den_value == 0.0 or not math.isfinite(den_value):
            warn(
                f"the event function crosses zero with total time derivative "
                f"{den_value} at t = {float(t_fix)!r} (a tangential or degenerate "
                "crossing), so the event time has no derivative; its gradient is "
                "left out. Choose an event function that crosses zero transversally.",
                UserWarning,
            )
            return event_t, state
        g = torch.as_tensor(event_fn(t_fix, state)).reshape(-1)[i]
        shift = -(g - g.detach()) / den_value  # zero valued, carries dt_e
        new_t = t_fix + shift.to(t_fix.dtype)
        new_parts = [
            p + fp.detach() * shift.to(p.dtype) for p, fp in zip(parts, f_parts)
        ]
    return new_t, _pack(new_parts, is_tuple)


def odeint_event(
    func: Callable,
    y0,
    t0: torch.Tensor,
    *,
    event_fn: Callable,
    reverse_time: bool = False,
    odeint_interface: Callable = odeint,
    **kwargs,
):
    """Solves from ``t0`` until ``event_fn(t, y)`` crosses zero; torchdiffeq's
    ``odeint_event``.

    Args:
        func: the vector field ``func(t, y)``.
        y0: initial state (tensor or tuple of tensors).
        t0: start time, a tensor (may require grad).
        event_fn: ``event_fn(t, y)`` returning a tensor; the earliest component
            to change sign stops the solve.
        reverse_time: search backwards in time.
        odeint_interface: the solver to call, :func:`torchnode.odeint` (the
            default) or :func:`torchnode.odeint_adjoint`.
        kwargs: passed on to ``odeint_interface`` (rtol, atol, method, options).

    Returns:
        ``(event_t, ys)``: the event time (0-dim, ``t0``'s dtype) and the states
        at ``t0`` and at the event, ``[2, *y0.shape]``. The event time is
        differentiable with respect to ``y0``, ``t0``, the parameters of
        ``func`` and those of ``event_fn`` (implicit function theorem).
    """
    if not isinstance(t0, torch.Tensor):
        raise TypeError(f"t0 must be a tensor, but got {type(t0).__name__}")
    start = t0.reshape(-1)[:1]
    step = -1.0 if reverse_time else 1.0
    t = torch.cat([start, start.detach() + step])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    sol_parts, is_tuple = _parts(solution)
    state = _pack([s[-1] for s in sol_parts], is_tuple)
    y0_fixed = _pack([s[0].detach() for s in sol_parts], is_tuple)
    event_t, state = event_time_gradient(
        func, event_fn, start[0].detach(), y0_fixed, event_t, state
    )
    new_state, _ = _parts(state)
    out = [torch.cat([s[:-1], e[None]]) for s, e in zip(sol_parts, new_state)]
    return event_t, _pack(out, is_tuple)
