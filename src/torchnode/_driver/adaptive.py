"""The adaptive solve loop: time, saving, statistics and failures.

The loop owns time (float64 on the host), the outputs and the counters. It asks a
stepper for a candidate step, a norm for the size of its error, and a controller
for the next step size; it knows nothing of how gradients are taken.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .._errors import SolverError, StiffnessWarning
from .._numerics.controllers import FACTOR_MAX, FACTOR_MIN, SAFETY, make_controller
from .._numerics.norms import rms_norm, scaled_error
from .._numerics.rk import RKStepper, StepResult
from .._numerics.tableau import ButcherTableau
from .._warn import warn
from .diagnose import (
    describe_non_finite,
    stability_cap,
    stability_limit,
    stability_poly,
    stiffness_estimate,
)
from .problem import Problem, sorted_times_in
from .solution import Stats

__all__ = ["AcceptedStep", "RunResult", "integrate_adaptive"]

DEFAULT_MAX_NUM_STEPS = 2**31 - 1
# A step shorter than this many float64 ulps of the current time cannot move it.
_UNDERFLOW_ULPS = 16.0
# Long explicit solves are checked for stiffness after this many steps, then
# after twice as many, and so on (8 evaluations each, against >= 10^4 steps).
_STIFF_CHECK_STEPS = 10_000


@dataclass
class AcceptedStep:
    """An accepted step, kept for checkpointed gradients and dense output.

    ``stages`` is filled only when dense output was asked for.
    """

    t0: float
    t1: float
    y0: torch.Tensor
    stages: torch.Tensor | None = None
    # One-sided evaluation: f0 taken just after t0 (+1/-1 along time) after a
    # jump, and the stages at t1 taken just before it when t1 is a jump.
    nudge_start: int = 0
    perturb_end: bool = False


@dataclass
class RunResult:
    """What a solve loop returns: flat outputs ``[T, N]`` and counters.

    ``step_at_outputs`` (adaptive loops) holds, for each output time, the step
    size the controller proposed right after the accepted step that reached it
    (``None`` for outputs at ``t[0]``); an adjoint's backward solve starts from
    it instead of guessing a first step.
    """

    ys: list[torch.Tensor]
    stats: Stats
    steps: list[AcceptedStep] = field(default_factory=list)
    event_t: float | None = None
    stepper: Any = None
    step_at_outputs: list[float | None] = field(default_factory=list)


EventHook = Callable[[float, float, torch.Tensor, torch.Tensor, Callable], float | None]


class _Adaptive:
    """State of one adaptive solve. See :func:`integrate_adaptive`."""

    def __init__(
        self,
        problem: Problem,
        tableau: ButcherTableau | None,
        *,
        record_steps: bool,
        dense: bool,
        stepper: Any = None,
    ) -> None:
        opts = problem.options
        self.p = problem
        self.field = problem.field
        if stepper is None:
            assert tableau is not None
            stepper = RKStepper(tableau, problem.y0.dtype, problem.y0.device)
        # Any object with RKStepper's step/dense_stages/dense and a `tableau`
        # giving name, order, error_order and b_error2.
        self.stepper = stepper
        self.tab = tableau = stepper.tableau
        k = min(tableau.order, tableau.error_order or tableau.order) + 1
        self.controller = make_controller(
            opts.get("controller", "pi"),
            k,
            float(opts.get("safety", SAFETY)),
            float(opts.get("ifactor", FACTOR_MAX)),
            float(opts.get("dfactor", FACTOR_MIN)),
            # Implicit and Rosenbrock steppers (cubic dense output) keep
            # Hairer's damped first growth; explicit pairs do not need it.
            damped_start=getattr(
                stepper, "damped_start", not isinstance(stepper, RKStepper)
            ),
        )
        self.min_step = float(opts.get("min_step", 0.0))
        self.max_step = float(opts.get("max_step", math.inf))
        self.max_num_steps = int(opts.get("max_num_steps", DEFAULT_MAX_NUM_STEPS))
        self.first_step = opts.get("first_step")
        self.record_steps = record_steps
        self.dense = dense
        self.stats = Stats()
        bind = getattr(stepper, "bind", None)
        if bind is not None:
            # Steppers with their own counters (Jacobians, LU factorisations,
            # switches of method) keep them in the loop's statistics.
            bind(self.stats, self.controller)
        self.steps: list[AcceptedStep] = []
        self.grad = torch.is_grad_enabled()
        y0 = problem.y0
        self._fast_norm = (
            problem.norm is rms_norm
            and not isinstance(problem.rtol, torch.Tensor)
            and tableau.b_error2 is None
        )
        self._complex = y0.is_complex()
        real = y0.real.dtype if self._complex else y0.dtype
        self._atol = torch.as_tensor(problem.atol, dtype=real, device=y0.device)
        self._inv_sqrt_n = 1.0 / math.sqrt(max(y0.numel(), 1))
        self._abs_cache: tuple = (None, None)
        r_max = (
            problem.rtol
            if not isinstance(problem.rtol, torch.Tensor)
            else float(problem.rtol.max())
        )
        self._stability_poly = stability_poly(tableau) if r_max >= 1 else None
        self._step_cap: float | None = None
        self._rho_due = 0
        self._stiff_check_at = (
            _STIFF_CHECK_STEPS if stability_limit(tableau) is not None else None
        )

    # -- step size -----------------------------------------------------------

    def _error_norm(self, y0: torch.Tensor, res: StepResult) -> float:
        p = self.p
        assert res.y_error is not None  # adaptive tableaus have b_error
        with torch.no_grad():
            if self._fast_norm:
                # RMS of y_error / (atol + rtol * max(|y0|, |y1|)) in as few
                # tensor operations as possible; |y0| is kept from the last step.
                abs_y1 = res.y1.abs()
                scale = torch.maximum(self._abs_y0(y0), abs_y1)
                scale = torch.add(self._atol, scale, alpha=float(p.rtol))
                self._abs_cache = (res.y1, abs_y1)
                ratio = (
                    res.y_error.abs() / scale if self._complex else res.y_error / scale
                )
                return float(torch.linalg.vector_norm(ratio)) * self._inv_sqrt_n
            e = p.norm(scaled_error(y0, res.y1, res.y_error, p.rtol, p.atol))
            if res.y_error2 is not None:
                # DOP853's estimate (Hairer, Norsett and Wanner I, II.10): the
                # 5th-order error damped by the 3rd-order one where both agree.
                e3 = p.norm(scaled_error(y0, res.y1, res.y_error2, p.rtol, p.atol))
                den = torch.sqrt(e * e + 0.01 * e3 * e3)
                e = torch.where(den > 0, e * e / den, e * 0)
            return float(e)

    def _stability_cap(self, dt: float, t: float, y, f) -> float:
        """With rtol >= 1 the error test cannot see instability (the tolerance
        grows with the state it inflates), so the step is held inside the
        method's stability region: ``dt * mu`` must stay inside it for every
        padded outer eigenvalue and numerical-range point ``mu`` of df/dy,
        complex ones on their own ray (see :func:`.diagnose.ritz_values` with
        ``bound`` and :func:`~torchnode._numerics.stability.stable_step`),
        re-estimated every 16 accepted steps (Arnoldi, up to 8 field
        evaluations, counted in ``nfe``)."""
        assert self._stability_poly is not None
        if self._step_cap is None or self.stats.n_accepted >= self._rho_due:
            self._step_cap = stability_cap(
                self._stability_poly, self.field, t, y, f, [self.direction]
            )
            self._rho_due = self.stats.n_accepted + 16
        return min(dt, self._step_cap)

    def _warn_if_stiff(self, t: float, dt: float, y, f, t_end: float) -> None:
        """Warns once if a long explicit solve is held to its stability limit:
        the default step budget is unlimited, so a stiff problem would otherwise
        crawl for hours without a word (Robertson kinetics on [0, 1e5])."""
        assert self._stiff_check_at is not None
        self._stiff_check_at *= 2
        limit = stability_limit(self.tab)
        rho = stiffness_estimate(self.field, t, y, f, count=True)
        if limit is None or not math.isfinite(rho) or rho * dt < 0.5 * limit:
            return
        self._stiff_check_at = None
        left = abs(t_end - t) / max(dt, 1e-300)
        warn(
            f"the problem looks stiff: after {self.stats.n_steps} steps, at t = "
            f"{t!r}, df/dy has an eigenvalue of size ~{rho:.3g}, which holds "
            f"{self.tab.name} to steps near {limit / rho:.3g} whatever the "
            f"tolerance; about {left:.3g} more steps would reach t = {t_end!r}. "
            "Use method='rodas4', 'auto' or 'kvaerno5', or bound the work with "
            "options['max_num_steps'].",
            StiffnessWarning,
        )

    def _abs_y0(self, y0: torch.Tensor) -> torch.Tensor:
        cached, value = self._abs_cache
        if cached is y0:
            return value
        return y0.abs()

    def _initial_step(self, t0: float, t_end: float, y0, f0) -> float:
        """Hairer, Norsett and Wanner I, II.4, "starting step size", clipped to the
        interval so that no evaluation falls outside it."""
        p = self.p
        span = abs(t_end - t0)
        with torch.no_grad():
            scale = y0.abs().mul_(p.rtol).add_(p.atol)
            d0 = float(p.norm(y0.abs() / scale))
            d1 = float(p.norm(f0.abs() / scale))
            h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
            h0 = min(h0, span, self.max_step)
            t1 = t0 + h0 * self.direction
            y1 = y0 + (t1 - t0) * f0
        # Outside no_grad: a field may differentiate internally.
        f1 = self.field(t1, y1).detach()
        with torch.no_grad():
            d2 = float(p.norm((f1 - f0).abs() / scale)) / h0
        order = self.tab.order
        big = max(d1, d2)
        if big <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / big) ** (1.0 / (order + 1))
        return min(100 * h0, h1, span, self.max_step)

    # -- the loop ------------------------------------------------------------

    def _fail(self, reason: str, t: float, dt: float, y, f, extra: str = "") -> None:
        name = self.tab.name
        stats = self.stats
        where = f"at t = {t!r} with dt = {dt:.3g} after {stats.n_steps} steps"
        if reason == "max_num_steps":
            msg = (
                f"max_num_steps = {self.max_num_steps} exceeded {where} "
                f"(solving to t = {self.p.t[-1]!r}). Raise options['max_num_steps'] "
                "or loosen rtol/atol."
            )
        elif reason == "non_finite":
            msg = f"the state became non-finite {where}{extra}."
        else:
            msg = f"step size underflow {where}{extra}."
        rho = stiffness_estimate(self.field, t, y, f) if y is not None else math.nan
        limit = stability_limit(self.tab)
        if limit is not None and math.isfinite(rho) and rho * abs(dt) > 0.2 * limit:
            msg += (
                f" The problem looks stiff: df/dy has an eigenvalue of size ~{rho:.3g},"
                f" so {name} is held to steps near its stability limit {limit:.3g}/"
                f"{rho:.3g} = {limit / rho:.3g} whatever the tolerance. Use a stiff "
                "(implicit) solver, or integrate a shorter span."
            )
        elif y is not None and y.real.dtype in (torch.float32, torch.float16):
            msg += " In float32 the tolerance may be out of reach: try float64."
        else:
            msg += (
                " Check the field for a singularity or blow-up near this time, or "
                "loosen rtol/atol."
            )
        raise SolverError(msg, t=t, dt=dt, reason=reason)

    def run(self, event_hook: EventHook | None = None) -> RunResult:
        p = self.p
        times = p.t
        n_out = len(times)
        t = times[0]
        t_end = times[-1]
        y = p.y0
        ys = [y]
        i_out = 1
        while i_out < n_out and times[i_out] == t:
            ys.append(y)
            i_out += 1
        self.step_at_outputs: list[float | None] = [None] * n_out
        if i_out == n_out:
            return self._result(ys, None)
        self.direction = direction = 1.0 if t_end > t else -1.0
        opts = p.options
        jumps = set(sorted_times_in(opts.get("jump_t"), t, t_end))
        stops = sorted_times_in(
            list(jumps) + sorted_times_in(opts.get("step_t"), t, t_end), t, t_end
        )
        stops.append(t_end)
        i_stop = 0
        f = p.first_field(t, y)
        self._check_finite_start(t, y, f)
        if self.first_step is not None:
            dt = abs(float(self.first_step))
        else:
            dt = self._initial_step(t, t_end, y, f)
        stepper = self.stepper
        controller = self.controller
        controller.reset()
        stats = self.stats
        callbacks = _callbacks(p.field.func)
        nudge_start = 0
        while i_out < n_out:
            dt = min(max(dt, self.min_step), self.max_step)
            if self._stability_poly is not None:
                dt = self._stability_cap(dt, t, y, f)
            stop = stops[i_stop]
            lands = (t + 1.01 * dt * direction - stop) * direction >= 0
            t1 = stop if lands else t + dt * direction
            # A step cut short to land on a stop (step_t, jump_t) says little
            # about the step size beyond it: the proposal it cut is kept.
            dt_cut = dt if lands and abs(t1 - t) < dt else 0.0
            if callbacks[0] is not None:
                callbacks[0](
                    p.field.time(t), p.layout.unflatten(y), p.field.time(t1 - t)
                )
            at_jump = lands and stop in jumps
            res = stepper.step(p.field, t, t1, y, f, perturb=at_jump)
            err = self._error_norm(y, res)
            stats.n_steps += 1
            finite = math.isfinite(err)
            accept = err <= 1.0 or (finite and dt <= self.min_step)
            i_reached = i_out
            if accept:
                stats.n_accepted += 1
                if callbacks[1] is not None:
                    callbacks[1](
                        p.field.time(t), p.layout.unflatten(y), p.field.time(t1 - t)
                    )
                y1 = res.y1
                f1 = res.f1 if res.f1 is not None else p.field(t1, y1)
                stages_fn = _StagesCache(stepper, p.field, t, t1, y, res.k, f1)
                if self.record_steps or self.dense:
                    # Copied: without autograd the stepper reuses its buffers.
                    stages = stages_fn().clone() if self.dense else None
                    y_rec = y if self.dense else y.detach()
                    self.steps.append(
                        AcceptedStep(t, t1, y_rec, stages, nudge_start, at_jump)
                    )
                while i_out < n_out and (times[i_out] - t1) * direction <= 0:
                    if times[i_out] == t1:
                        ys.append(y1)
                    else:
                        ys.append(stepper.dense(y, stages_fn(), t, t1, times[i_out]))
                    i_out += 1
                if event_hook is not None:
                    t_event = event_hook(t, t1, y, y1, stages_fn)
                    if t_event is not None:
                        return self._result(ys, t_event)
                nudge_start = 0
                if lands:
                    if at_jump:
                        # Restart on the far side of the discontinuity.
                        nudge_start = 1 if direction > 0 else -1
                        f1 = p.field(t1, y1, nudge_start)
                    i_stop += 1
                dt_taken = abs(t1 - t)
                t, y, f = t1, y1, f1
            else:
                stats.n_rejected += 1
                if callbacks[2] is not None:
                    callbacks[2](
                        p.field.time(t), p.layout.unflatten(y), p.field.time(t1 - t)
                    )
                dt_taken = abs(t1 - t)
            dt = dt_taken * controller.propose(err, accept)
            if accept and dt < dt_cut:
                dt = dt_cut
            for i in range(i_reached, i_out):
                self.step_at_outputs[i] = dt
            if stats.n_steps >= self.max_num_steps and i_out < n_out:
                self._fail("max_num_steps", t, dt, y, f)
            check_at = self._stiff_check_at
            if check_at is not None and stats.n_steps >= check_at and i_out < n_out:
                self._warn_if_stiff(t, dt, y, f, stops[-1])
            # Measured against the current time only: the span's ulp would call
            # every step of a huge interval an underflow. No check once done.
            if i_out < n_out and dt < _UNDERFLOW_ULPS * math.ulp(abs(t)):
                extra = "" if finite else self._non_finite_detail(res)
                self._fail(
                    "dt_underflow" if finite else "non_finite", t, dt, y, f, extra
                )
        return self._result(ys, None)

    def _result(self, ys: list[torch.Tensor], event_t: float | None) -> RunResult:
        self.stats.nfe = self.p.field.nfe
        if len(ys) > 1:
            # One check per solve: a state that overflowed in accepted steps
            # (possible only when the error test is blind, as with rtol >= 1)
            # is an error, never a returned value.
            bad = describe_non_finite("the final state", ys[-1].detach())
            if bad is not None:
                raise SolverError(
                    f"the solve reached t = {self.p.t[len(ys) - 1]!r} with {bad}: "
                    "the steps left the method's stability region unnoticed. Use "
                    "rtol < 1, or a smaller max_step.",
                    t=self.p.t[len(ys) - 1],
                    dt=0.0,
                    reason="non_finite",
                )
        bind = getattr(self.stepper, "bind", None)
        if bind is not None:
            # Steps replayed later (checkpointed gradients) are not counted.
            bind(None, None)
        return RunResult(
            ys, self.stats, self.steps, event_t, self.stepper, self.step_at_outputs
        )

    def _check_finite_start(self, t: float, y, f) -> None:
        bad = describe_non_finite("y0", y) or describe_non_finite("func(t0, y0)", f)
        if bad is not None:
            raise SolverError(
                f"the solve cannot start at t = {t!r}: {bad}. Check y0 and the "
                "field's parameters for NaN or inf.",
                t=t,
                dt=0.0,
                reason="non_finite",
            )

    def _non_finite_detail(self, res: StepResult) -> str:
        bad = describe_non_finite("the candidate state y1", res.y1)
        if bad is None:
            bad = describe_non_finite("a stage derivative", res.k.reshape(-1))
        return f"; {bad}" if bad else "; the error estimate is not finite"


class _StagesCache:
    """Dense-output stages of one accepted step, computed at most once."""

    __slots__ = ("args", "stepper", "value")

    def __init__(self, stepper, field, t0, t1, y0, k, f1) -> None:
        self.stepper = stepper
        self.args = (field, t0, t1, y0, k, f1)
        self.value: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor:
        if self.value is None:
            self.value = self.stepper.dense_stages(*self.args)
        return self.value


def _callbacks(func) -> tuple:
    return (
        getattr(func, "callback_step", None),
        getattr(func, "callback_accept_step", None),
        getattr(func, "callback_reject_step", None),
    )


def integrate_adaptive(
    problem: Problem,
    tableau: ButcherTableau | None,
    *,
    record_steps: bool = False,
    dense: bool = False,
    event_hook: EventHook | None = None,
    stepper: Any = None,
) -> RunResult:
    """Solves ``problem`` with an embedded explicit Runge-Kutta pair.

    Args:
        problem: the normalised problem.
        tableau: an adaptive tableau (with ``b_error``).
        record_steps: keep every accepted ``(t0, t1, y0)`` (checkpointing).
        dense: also keep each step's dense-output stages (``Solution.evaluate``).
        event_hook: called after each accepted step; returns an event time to
            stop at, or ``None``.
        stepper: a stepper to use instead of the tableau's Runge-Kutta one
            (same interface; ``tableau`` may then be ``None``).

    Returns:
        A :class:`RunResult` with the flat outputs at ``problem.t``.

    Raises:
        SolverError: step-size underflow, a non-finite state, or more than
            ``max_num_steps`` steps.
    """
    return _Adaptive(
        problem, tableau, record_steps=record_steps, dense=dense, stepper=stepper
    ).run(event_hook)
