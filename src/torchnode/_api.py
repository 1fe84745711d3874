"""The public entry points: torchdiffeq's ``odeint`` and our ``solve``."""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._driver.adaptive import RunResult
from ._driver.methods import MethodSpec, resolve_method, run_problem
from ._driver.problem import Problem, check_method_options, normalize
from ._driver.solution import Solution
from ._gradients.time_grad import run_with_time_gradients
from ._numerics.tableau import ButcherTableau

__all__ = ["odeint", "odeint_adjoint", "solve"]

GRADIENT_MODES = ("direct", "adjoint", "checkpoint")

Method = str | ButcherTableau | None


def _prepare(
    func: Callable,
    y0,
    t: torch.Tensor,
    rtol,
    atol,
    method: Method,
    options: dict | None,
) -> tuple[MethodSpec, Problem]:
    spec = resolve_method(method)
    opts = check_method_options(spec.name, options, spec.options)
    problem = normalize(
        func, y0, t, rtol, atol, opts, check_tolerances=spec.uses_tolerances
    )
    return spec, problem


def _with_y0(problem: Problem, y0: torch.Tensor) -> Problem:
    return dataclasses.replace(problem, y0=y0)


def _direct(spec: MethodSpec, problem: Problem, dense: bool, event_hook=None):
    """Autograd through every operation of the solve."""
    holder: dict[str, RunResult] = {}

    def run(y0: torch.Tensor) -> torch.Tensor:
        res = run_problem(
            spec, _with_y0(problem, y0), dense=dense, event_hook=event_hook
        )
        holder["res"] = res
        return torch.stack(res.ys)

    ys = run_with_time_gradients(problem, run, holder)
    return ys, holder["res"]


def _dense_evaluator(problem: Problem, res: RunResult) -> Callable:
    steps = res.steps
    stepper = res.stepper
    assert stepper is not None
    direction = problem.direction
    keys = [s.t1 * direction for s in steps]
    t_first, t_last = problem.t[0], problem.t[-1]

    def one(tq: float) -> torch.Tensor:
        lo, hi = sorted((t_first, t_last))
        if not lo <= tq <= hi:
            raise ValueError(
                f"evaluate needs times inside the solved interval [{lo}, {hi}], "
                f"but got {tq}"
            )
        if not steps:
            return problem.y0
        i = min(bisect.bisect_left(keys, tq * direction), len(steps) - 1)
        s = steps[i]
        assert s.stages is not None  # kept by dense=True
        return stepper.dense(s.y0, s.stages, s.t0, s.t1, tq)

    def evaluate(t_query):
        tq = torch.as_tensor(t_query, dtype=torch.float64)
        values = [one(x) for x in tq.reshape(-1).tolist()]
        if tq.ndim == 0:
            return problem.layout.unflatten(values[0])
        return problem.layout.unflatten_batch(torch.stack(values))

    return evaluate


def _solve_per_sample(
    func, y0, t, method: Method, rtol, atol, options, gradient: str, dense: bool
) -> Solution:
    from ._driver.per_sample import solve_per_sample

    if gradient != "direct" and torch.is_grad_enabled():
        raise ValueError(
            f"gradient={gradient!r} is not implemented for per-sample solves; "
            "use gradient='direct' (autograd through the batched loop)"
        )
    if dense:
        raise ValueError("dense output is not available for per-sample solves")
    spec = resolve_method(method)
    if spec.tableau is None or not spec.adaptive:
        raise ValueError(
            f"per-sample solves need an adaptive Runge-Kutta method, but got "
            f"{spec.name!r}"
        )
    res = solve_per_sample(func, y0, t, spec.tableau, rtol, atol, options)
    return Solution(ts=t, ys=res.ys, stats=res.stats)


def _check_adjoint_method(spec: MethodSpec, adjoint_method: Method) -> None:
    from ._numerics.rosenbrock import ROSENBROCK_METHODS

    back = spec if adjoint_method is None else resolve_method(adjoint_method)
    for s in (spec, back):
        if s.name in ROSENBROCK_METHODS:
            raise ValueError(
                f"gradient='adjoint' is not available with method {s.name!r}: the "
                "adjoint solve integrates the state backward in time, where the "
                "decaying modes of a stiff problem grow without bound. Use "
                "gradient='checkpoint' (same gradient as 'direct', memory per "
                "step of one state) or 'direct'."
            )


def solve(
    func: Callable,
    y0: torch.Tensor | Sequence[torch.Tensor],
    t: torch.Tensor,
    *,
    method: Method = "dopri5",
    rtol: float | torch.Tensor | Sequence = 1e-7,
    atol: float | torch.Tensor | Sequence = 1e-9,
    options: dict[str, Any] | None = None,
    gradient: str = "direct",
    dense: bool = False,
    adjoint_rtol: float | Sequence | None = None,
    adjoint_atol: float | Sequence | None = None,
    adjoint_method: Method = None,
    adjoint_options: dict[str, Any] | None = None,
    adjoint_params: Sequence[torch.Tensor] | None = None,
    per_sample: bool = False,
) -> Solution:
    """Solves ``dy/dt = func(t, y)`` from ``y(t[0]) = y0``; returns a :class:`Solution`.

    Args:
        func: the vector field, called as ``func(t, y)`` with ``t`` a 0-dim
            tensor and ``y`` shaped like ``y0``.
        y0: initial state, any shape, or a tuple of tensors; float64, float32,
            float16, bfloat16 or complex. Half-precision states are integrated
            in float32 and returned in their own dtype.
        t: output times, 1-D, increasing or decreasing (repeated values allowed);
            ``t[0]`` is the initial time. Time arithmetic is float64 throughout.
        method: a method name (see :func:`torchnode.methods`) or a
            :class:`ButcherTableau`.
        rtol, atol: relative and absolute tolerances: numbers, tensors
            broadcastable to ``y0``, or one per part of a tuple ``y0``.
        options: method options, with torchdiffeq's keys.
        gradient: ``'direct'`` (autograd through the solver), ``'adjoint'``
            (backward solve of the adjoint ODE, memory independent of the number
            of steps) or ``'checkpoint'`` (store the accepted steps, recompute
            each under autograd in the backward pass: same gradient as
            ``'direct'``, less memory).
        dense: keep the step data so that :meth:`Solution.evaluate` works.
        adjoint_rtol, adjoint_atol, adjoint_method, adjoint_options,
            adjoint_params: the backward solve's settings for
            ``gradient='adjoint'``; see :func:`torchnode.odeint_adjoint`.
        per_sample: give each sample of the batch ``y0 [batch, *state]`` its own
            time, step size, error norm, accept/reject decision and controller
            (implied by a ``t`` of shape ``[batch, T]``, one output grid per
            sample). ``func`` is still called once per stage on the whole
            batch, but with ``t`` a ``[batch]`` tensor of per-sample times.
            Needs an adaptive method and ``gradient='direct'``; ``dense``, the
            ``norm``, ``step_t`` and ``jump_t`` options and gradients with
            respect to ``t`` are not available.

    Returns:
        A :class:`Solution`: ``ys`` is ``[len(t), *y0.shape]``. With
        ``per_sample`` it is ``[batch, T, *state]`` instead (batch first, each
        sample at its own times), and the step counters of ``stats`` are
        ``[batch]`` int64 tensors; ``stats.nfe`` counts the batched field calls.

    Raises:
        ValueError, TypeError: malformed input, named in the message.
        SolverError: the solve failed (underflow, non-finite state, step budget).
    """
    if gradient not in GRADIENT_MODES:
        raise ValueError(
            f"gradient must be one of {', '.join(GRADIENT_MODES)}, but got {gradient!r}"
        )
    if per_sample or (isinstance(t, torch.Tensor) and t.ndim == 2):
        return _solve_per_sample(
            func, y0, t, method, rtol, atol, options, gradient, dense
        )
    spec, problem = _prepare(func, y0, t, rtol, atol, method, options)
    if gradient == "direct" or not torch.is_grad_enabled():
        ys, res = _direct(spec, problem, dense)
    elif gradient == "checkpoint":
        from ._gradients.checkpoint import solve_checkpoint

        ys, res = solve_checkpoint(spec, problem, dense=dense)
    else:
        from ._gradients.adjoint import AdjointSettings, solve_adjoint

        _check_adjoint_method(spec, adjoint_method)

        settings = AdjointSettings.make(
            problem,
            spec,
            adjoint_rtol,
            adjoint_atol,
            adjoint_method,
            adjoint_options,
            adjoint_params,
        )
        ys, res = solve_adjoint(spec, problem, settings, dense=dense)
    dense_fn = _dense_evaluator(problem, res) if dense and spec.adaptive else None
    return Solution(
        ts=t,
        ys=problem.layout.unflatten_batch(ys),
        stats=res.stats,
        _dense=dense_fn,
    )


def _check_1d_times(t) -> None:
    if isinstance(t, torch.Tensor) and t.ndim != 1:
        raise ValueError(
            f"t must be 1-D for odeint, but got shape {tuple(t.shape)}; for a time "
            "grid per sample use torchnode.solve(..., per_sample=True)"
        )


def odeint(
    func: Callable,
    y0: torch.Tensor | Sequence[torch.Tensor],
    t: torch.Tensor,
    *,
    rtol: float | torch.Tensor | Sequence = 1e-7,
    atol: float | torch.Tensor | Sequence = 1e-9,
    method: Method = None,
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
):
    """Integrates ``dy/dt = func(t, y)``; torchdiffeq's ``odeint``, same arguments.

    Gradients flow by autograd through the solver's operations.

    Args:
        func: the vector field ``func(t, y)``.
        y0: initial state (tensor of any shape, or a tuple of tensors).
        t: 1-D output times, increasing or decreasing; ``t[0]`` is the start.
        rtol, atol: tolerances (numbers, tensors, or one per tuple part).
        method: ``None`` for ``'dopri5'``, a name, or a :class:`ButcherTableau`.
        options: method options (torchdiffeq's keys).
        event_fn: ``event_fn(t, y)``; when given, the solve stops where it
            changes sign and ``(event_t, ys)`` is returned.

    Returns:
        ``ys`` of shape ``[len(t), *y0.shape]`` (a tuple for tuple states), or
        ``(event_t, ys)`` with an ``event_fn``.
    """
    _check_1d_times(t)
    if event_fn is not None:
        from ._events import odeint_with_event

        return odeint_with_event(
            func,
            y0,
            t,
            rtol=rtol,
            atol=atol,
            method=method,
            options=options,
            event_fn=event_fn,
        )
    return solve(func, y0, t, method=method, rtol=rtol, atol=atol, options=options).ys


def odeint_adjoint(
    func: Callable,
    y0: torch.Tensor | Sequence[torch.Tensor],
    t: torch.Tensor,
    *,
    rtol: float | torch.Tensor | Sequence = 1e-7,
    atol: float | torch.Tensor | Sequence = 1e-9,
    method: Method = None,
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
    adjoint_rtol: float | Sequence | None = None,
    adjoint_atol: float | Sequence | None = None,
    adjoint_method: Method = None,
    adjoint_options: dict[str, Any] | None = None,
    adjoint_params: Sequence[torch.Tensor] | None = None,
):
    """torchdiffeq's ``odeint_adjoint``: gradients by the adjoint method.

    Memory does not grow with the number of steps. The backward solve uses
    ``adjoint_rtol``/``adjoint_atol``/``adjoint_method``/``adjoint_options``,
    each defaulting to the forward solve's; ``adjoint_options={'norm':
    'seminorm'}`` leaves the parameter adjoint out of the error norm. Each
    backward interval starts with the forward solve's step at that time (scaled
    to the backward tolerances); ``adjoint_options={'first_step': None}`` picks
    it by the initial-step heuristic instead. A ``first_step`` in ``options``
    is not carried over: it sizes the forward start at ``t[0]``.

    ``adjoint_params`` lists the tensors to differentiate. By default these are
    the parameters (and gradient-carrying buffers) of ``func`` when it is an
    ``nn.Module``, plus any other leaf tensor requiring grad that the field's
    graph reaches (a closure), so no gradient is silently lost. ``()`` is
    allowed. Tensors in ``adjoint_params`` that do not require grad are skipped.
    """
    _check_1d_times(t)
    if event_fn is not None:
        from ._events import odeint_with_event

        return odeint_with_event(
            func,
            y0,
            t,
            rtol=rtol,
            atol=atol,
            method=method,
            options=options,
            event_fn=event_fn,
            gradient="adjoint",
        )
    return solve(
        func,
        y0,
        t,
        method=method,
        rtol=rtol,
        atol=atol,
        options=options,
        gradient="adjoint",
        adjoint_rtol=adjoint_rtol,
        adjoint_atol=adjoint_atol,
        adjoint_method=adjoint_method,
        adjoint_options=adjoint_options,
        adjoint_params=adjoint_params,
    ).ys
