"""Adaptive stepping with one time, step size and controller per batch sample.

The state is ``[B, N]`` (the batch flattened per sample); time, step size,
error norm and controller memory are ``[B]`` tensors, time in float64. Every
stage calls the field once on the whole batch with a ``[B]`` time tensor. A
sample whose outputs are all written is frozen: its step is 0 and its state is
held by a mask, so it costs nothing but its share of the batched call.

Each step is clipped to the sample's next output time, so outputs are step
ends and no dense output is needed. The loop synchronises with the host once
per step, to learn whether every sample is done or one has failed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._errors import SolverError
from .._numerics.controllers import (
    FACTOR_MAX,
    FACTOR_MIN,
    PI_ALPHA_K,
    PI_BETA_K,
    PI_ERR_PREV_MIN,
    SAFETY,
)
from .._numerics.tableau import ButcherTableau
from .adaptive import DEFAULT_MAX_NUM_STEPS
from .diagnose import stability_cap, stability_poly
from .problem import ADAPTIVE_OPTIONS, _clamp_rtol, _work_dtype
from .solution import Stats

__all__ = ["PerSampleResult", "solve_per_sample"]

_UNDERFLOW_ULPS = 16.0
# The adaptive options, less those that need one time line for the whole batch.
_OPTIONS = ADAPTIVE_OPTIONS - {"norm", "step_t", "jump_t"}


@dataclass
class PerSampleResult:
    """Outputs ``[B, T, *state]`` (caller's dtype) and per-sample counters."""

    ys: torch.Tensor
    stats: Stats


class _BatchField:
    """Calls ``func(t, y)`` with ``t`` a ``[B]`` tensor and ``y`` ``[B, *state]``;
    returns the flat ``[B, N]`` derivative in the working dtype."""

    def __init__(
        self,
        func: Callable,
        shape: torch.Size,
        dtype: torch.dtype,
        work: torch.dtype,
        t_dtype: torch.dtype,
    ) -> None:
        self.func = func
        self.shape = shape
        self.dtype = dtype
        self.work = work
        self.t_dtype = t_dtype
        self.nfe = 0
        self.checked = False

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        y_in = y.view(self.shape)
        if y_in.dtype != self.dtype:
            y_in = y_in.to(self.dtype)
        out = self.func(t.to(self.t_dtype), y_in)
        if not self.checked:
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    f"func must return a tensor shaped like y0, but got "
                    f"{type(out).__name__}"
                )
            if out.shape != self.shape:
                raise ValueError(
                    f"func's output must have y0's shape {tuple(self.shape)}, but "
                    f"got {tuple(out.shape)}"
                )
            if out.dtype != self.dtype:
                raise TypeError(
                    f"func's output must have y0's dtype {self.dtype}, but got "
                    f"{out.dtype}"
                )
            self.checked = True
        return out.reshape(y.shape).to(self.work)


def _per_sample_times(t: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """Validated output times as a float64 ``[B, T]`` tensor."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a tensor of times, but got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(
            f"t must be a floating point tensor, but got dtype {t.dtype}; "
            "use t.double()"
        )
    if t.requires_grad:
        raise ValueError(
            "per-sample solves give no gradient with respect to t; pass "
            "t.detach(), or solve with a shared 1-D t"
        )
    if y0.ndim < 1:
        raise ValueError("a per-sample solve needs y0 of shape [batch, *state]")
    batch = y0.shape[0]
    if t.ndim == 1:
        t = t.expand(batch, -1)
    elif t.ndim != 2 or t.shape[0] != batch:
        raise ValueError(
            f"per-sample t must be 1-D or [batch, T] with batch = y0.shape[0] = "
            f"{batch}, but got shape {tuple(t.shape)}"
        )
    if t.shape[1] < 2:
        raise ValueError(
            f"t must hold at least 2 times (start and end), but got {t.shape[1]}"
        )
    if t.device != y0.device:
        raise ValueError(
            f"t must be on y0's device {y0.device}, but got {t.device}; "
            "move it with t.to(y0.device)"
        )
    times = t.detach().to(torch.float64)
    if not bool(torch.isfinite(times).all()):
        raise ValueError("t must be finite")
    diffs = times[:, 1:] - times[:, :-1]
    bad = ((diffs > 0).any(dim=1) & (diffs < 0).any(dim=1)).nonzero()
    if bad.numel() > 0:
        i = int(bad[0, 0])
        raise ValueError(
            f"each sample's times must be monotonic, but sample {i} has "
            f"{times[i].tolist()}"
        )
    return times.contiguous()


def _tolerance(name: str, value, y0: torch.Tensor, real: torch.dtype):
    if isinstance(value, torch.Tensor) and value.numel() > 1:
        try:
            tol = value.to(dtype=real, device=y0.device).expand(y0.shape)
        except RuntimeError:
            raise ValueError(
                f"{name} must broadcast to y0's shape {tuple(y0.shape)}, but got "
                f"shape {tuple(value.shape)}"
            ) from None
        tol = tol.reshape(y0.shape[0], -1)
        if not bool(torch.isfinite(tol).all()) or bool((tol < 0).any()):
            raise ValueError(f"{name} must be finite and >= 0")
        return tol
    if isinstance(value, (tuple, list)):
        raise ValueError(f"per-sample solves take a number or a tensor {name}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, but got {v}")
    return v


def _rms(x: torch.Tensor) -> torch.Tensor:
    """RMS over the state dimension: ``[B, N]`` to ``[B]``."""
    n = max(x.shape[1], 1)
    return torch.linalg.vector_norm(x, dim=1) / math.sqrt(n)


class _Loop:
    def __init__(
        self,
        field: _BatchField,
        tab: ButcherTableau,
        y0: torch.Tensor,
        times: torch.Tensor,
        rtol,
        atol,
        options: dict,
    ) -> None:
        self.field = field
        self.tab = tab
        self.y0 = y0
        self.times = times
        self.rtol = rtol
        self.atol = atol
        work = y0.dtype
        dev = y0.device

        def vec(values) -> torch.Tensor:
            return torch.tensor(np.asarray(values, dtype=np.float64)).to(
                dtype=work, device=dev
            )

        s = tab.n_stages
        self.a = [vec(tab.a[i]) for i in range(s)]
        self.c = list(tab.c)
        self.b = vec(tab.b)
        assert tab.b_error is not None
        self.b_error = vec(tab.b_error)
        self.b_error2 = None if tab.b_error2 is None else vec(tab.b_error2)
        k = min(tab.order, tab.error_order or tab.order) + 1
        self.exponent = 1.0 / k
        self.alpha = PI_ALPHA_K / k
        self.beta = PI_BETA_K / k
        self.safety = float(options.get("safety", SAFETY))
        self.ifactor = float(options.get("ifactor", FACTOR_MAX))
        self.dfactor = float(options.get("dfactor", FACTOR_MIN))
        kind = options.get("controller", "pi")
        if kind not in ("pi", "i"):
            raise ValueError(f"controller must be 'pi' or 'i', but got {kind!r}")
        self.pi = kind == "pi"
        self.min_step = float(options.get("min_step", 0.0))
        self.max_step = float(options.get("max_step", math.inf))
        self.max_num_steps = int(options.get("max_num_steps", DEFAULT_MAX_NUM_STEPS))
        self.first_step = options.get("first_step")
        r_max = float(rtol.max()) if isinstance(rtol, torch.Tensor) else float(rtol)
        self.stability_poly = stability_poly(tab) if r_max >= 1 else None

    # -- per-sample pieces ---------------------------------------------------

    def _scale(self, y0: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        big = torch.maximum(y0.abs(), y1.abs())
        return self.atol + self.rtol * big

    def _error_norm(self, y0, y1, k: torch.Tensor, dt_w: torch.Tensor):
        with torch.no_grad():
            scale = self._scale(y0, y1)
            err = dt_w * torch.matmul(self.b_error, k)
            e = _rms(err.abs() / scale)
            if self.b_error2 is not None:
                err3 = dt_w * torch.matmul(self.b_error2, k)
                e3 = _rms(err3.abs() / scale)
                den = torch.sqrt(e * e + 0.01 * e3 * e3)
                e = torch.where(den > 0, e * e / den.clamp(min=1e-300), e * 0)
            return e.to(torch.float64)

    def _initial_step(self, t0, span, direction, y0, f0) -> torch.Tensor:
        """Hairer, Norsett and Wanner I, II.4, per sample, clipped to the span."""
        if self.first_step is not None:
            return torch.full_like(t0, abs(float(self.first_step)))
        with torch.no_grad():
            scale = self.atol + self.rtol * y0.abs()
            d0 = _rms(y0.abs() / scale).to(torch.float64)
            d1 = _rms(f0.abs() / scale).to(torch.float64)
            small = (d0 < 1e-5) | (d1 < 1e-5)
            h0 = torch.where(small, 1e-6, 0.01 * d0 / d1.clamp(min=1e-300))
            # A sample with nothing to do keeps a harmless positive step.
            span_pos = torch.where(span > 0, span, 1.0)
            h0 = h0.clamp(max=self.max_step).minimum(span_pos)
            t1 = t0 + h0 * direction
            y1 = y0 + (h0 * direction).to(y0.real.dtype)[:, None] * f0
            f1 = self.field(t1, y1).detach()
            d2 = _rms((f1 - f0).abs() / scale).to(torch.float64) / h0
            big = torch.maximum(d1, d2)
            h1 = torch.where(
                big <= 1e-15,
                torch.clamp(h0 * 1e-3, min=1e-6),
                (0.01 / big.clamp(min=1e-300)) ** (1.0 / (self.tab.order + 1)),
            )
            h = torch.minimum(100 * h0, h1).minimum(span_pos)
            return h.clamp(max=self.max_step)

    def _factor(self, err, accept, err_prev, rejected_last):
        """Vectorised PI (or I) control: the step factor, new controller state."""
        finite = torch.isfinite(err)
        safe = torch.where(finite & (err > 0), err, 1.0)
        i_factor = self.safety * safe ** (-self.exponent)
        rej = torch.where(finite, i_factor.clamp(self.dfactor, 1.0), self.dfactor)
        if self.pi:
            # err_prev < 0: no step accepted yet, integral control (as in
            # PIController).
            pi_factor = (
                self.safety * safe ** (-self.alpha) * err_prev.abs() ** self.beta
            )
            acc = torch.where(err_prev < 0, i_factor, pi_factor)
        else:
            acc = i_factor
        acc = torch.where(err == 0, self.ifactor, acc)
        acc = acc.clamp(self.dfactor, self.ifactor)
        if self.pi:
            acc = torch.where(rejected_last, acc.clamp(max=1.0), acc)
            err_prev = torch.where(accept, err.clamp(min=PI_ERR_PREV_MIN), err_prev)
            rejected_last = ~accept
        return torch.where(accept, acc, rej), err_prev, rejected_last

    def _stability_cap(self, t, y, f, direction: torch.Tensor) -> float:
        """The step cap for rtol >= 1 (see the adaptive loop's ``_stability_cap``),
        one for the whole batch: the Ritz values of the batch's block-diagonal
        Jacobian cover every sample's outer eigenvalues."""
        assert self.stability_poly is not None
        field: Any = self.field  # duck-typed: nfe and __call__(t, y)
        signs = set(direction.tolist())
        return stability_cap(self.stability_poly, field, t, y, f, signs)

    # -- the loop ------------------------------------------------------------

    def run(self) -> tuple[torch.Tensor, Stats]:
        times = self.times
        batch, n_out = times.shape
        dev = times.device
        y = self.y0
        real = y.real.dtype
        t = times[:, 0].clone()
        t_end = times[:, -1]
        span = (t_end - t).abs()
        direction = torch.where(t_end >= t, 1.0, -1.0).to(torch.float64)
        cols = torch.arange(n_out, device=dev)

        def passed(tt: torch.Tensor) -> torch.Tensor:
            # Index of each sample's next output strictly ahead of tt.
            ahead = (times - tt[:, None]) * direction[:, None] <= 0
            return ahead.sum(dim=1)

        hit = times == t[:, None]
        out = torch.where(hit[:, :, None], y[:, None, :], torch.zeros_like(y)[:, None])
        i_out = passed(t)
        done = i_out >= n_out

        n_steps = torch.zeros(batch, dtype=torch.int64, device=dev)
        n_acc = torch.zeros_like(n_steps)
        n_rej = torch.zeros_like(n_steps)
        f = self.field(t, y)
        bad = ~torch.isfinite(torch.view_as_real(f) if f.is_complex() else f)
        if bool(bad.any()) or not bool(torch.isfinite(y.abs()).all()):
            raise SolverError(
                "the solve cannot start: y0 or func(t0, y0) is not finite. Check "
                "y0 and the field's parameters for NaN or inf.",
                t=float(t[0]),
                dt=0.0,
                reason="non_finite",
            )
        h = self._initial_step(t, span, direction, y, f)
        err_prev = torch.full_like(t, -1.0)
        rejected_last = torch.zeros_like(done)
        s = self.tab.n_stages
        fsal = self.tab.fsal
        n_loops = 0
        while True:
            active = ~done
            h = h.clamp(self.min_step, self.max_step)
            if self.stability_poly is not None:
                # Re-estimated every 16 passes, as in the shared-step loop.
                if n_loops % 16 == 0:
                    cap = self._stability_cap(t, y, f, direction)
                h = h.clamp(max=cap)
                n_loops += 1
            t_next = times.gather(1, i_out.clamp(max=n_out - 1)[:, None])[:, 0]
            lands = (t + 1.01 * h * direction - t_next) * direction >= 0
            t1 = torch.where(lands, t_next, t + h * direction)
            t1 = torch.where(active, t1, t)
            dt = t1 - t
            dt_w = dt.to(real)[:, None]
            ks = [f]
            y1 = y
            for i in range(1, s):
                k = torch.stack(ks, dim=1)
                y_i = y + dt_w * torch.matmul(self.a[i], k)
                c = self.c[i]
                t_i = t1 if c == 1.0 else t + c * dt
                if fsal and i == s - 1:
                    y1 = y_i
                ks.append(self.field(t_i, y_i))
            k = torch.stack(ks, dim=1)
            if not fsal:
                y1 = y + dt_w * torch.matmul(self.b, k)
            err = self._error_norm(y, y1, k, dt_w)
            finite = torch.isfinite(err)
            at_min = h <= self.min_step
            accept = ((err <= 1.0) | (finite & at_min)) & active
            reject = active & ~accept
            n_steps = n_steps + active
            n_acc = n_acc + accept
            n_rej = n_rej + reject
            y = torch.where(accept[:, None], y1, y)
            if fsal:
                f = torch.where(accept[:, None], ks[-1], f)
            t = torch.where(accept, t1, t)
            hit = accept[:, None] & (times == t1[:, None]) & (cols >= i_out[:, None])
            out = torch.where(hit[:, :, None], y1[:, None, :], out)
            i_out = torch.where(accept, passed(t), i_out)
            done = i_out >= n_out
            if not fsal:
                f = self.field(t, y)
            factor, err_prev, rejected_last = self._factor(
                err, accept, err_prev, rejected_last
            )
            h = torch.where(active, dt.abs() * factor, h)
            # Failures, checked only for samples still running.
            scale_t = torch.maximum(t.abs(), span)
            ulp = torch.nextafter(scale_t, torch.full_like(scale_t, math.inf)) - scale_t
            underflow = ~done & (h < _UNDERFLOW_ULPS * ulp)
            over = ~done & (n_steps >= self.max_num_steps)
            flags = torch.stack([done.all(), underflow.any(), over.any()]).tolist()
            if flags[1] or flags[2]:
                self._fail(underflow, over, t, h, n_steps, finite)
            if flags[0]:
                break
        stats = Stats(nfe=self.field.nfe)
        stats.n_steps = n_steps  # type: ignore[assignment]
        stats.n_accepted = n_acc  # type: ignore[assignment]
        stats.n_rejected = n_rej  # type: ignore[assignment]
        return out, stats

    def _fail(self, underflow, over, t, h, n_steps, finite) -> None:
        if bool(over.any()):
            i = int(over.nonzero()[0, 0])
            reason = "max_num_steps"
            why = (
                f"max_num_steps = {self.max_num_steps} exceeded for sample {i}. "
                "Raise options['max_num_steps'] or loosen rtol/atol."
            )
        else:
            i = int(underflow.nonzero()[0, 0])
            if bool(finite[i]):
                reason = "dt_underflow"
                why = (
                    f"step size underflow in sample {i}. Check the field for a "
                    "singularity or blow-up near this time, or loosen rtol/atol."
                )
            else:
                reason = "non_finite"
                why = f"the state of sample {i} became non-finite."
        ti, hi = float(t[i]), float(h[i])
        raise SolverError(
            f"{why} (sample {i} at t = {ti!r} with dt = {hi:.3g} after "
            f"{int(n_steps[i])} steps)",
            t=ti,
            dt=hi,
            reason=reason,
        )


def solve_per_sample(
    func: Callable,
    y0: torch.Tensor,
    t: torch.Tensor,
    tableau: ButcherTableau,
    rtol,
    atol,
    options: dict | None,
) -> PerSampleResult:
    """Solves each sample of the batch ``y0 [B, *state]`` with its own steps.

    Args:
        func: ``func(t, y)`` with ``t`` a ``[B]`` tensor of per-sample times and
            ``y`` shaped like ``y0``.
        y0: ``[B, *state]``, a plain tensor.
        t: ``[T]`` (shared output times) or ``[B, T]`` (one grid per sample).
        tableau: an adaptive tableau.
        rtol, atol: numbers, or tensors broadcastable to ``y0``.
        options: adaptive options (``norm``, ``step_t`` and ``jump_t`` are not
            supported per sample).

    Returns:
        ``ys`` of shape ``[B, T, *state]`` and :class:`Stats` whose step
        counters are ``[B]`` int64 tensors (``nfe`` counts batched field calls).
    """
    if not isinstance(y0, torch.Tensor):
        raise TypeError("per-sample solves need y0 to be one tensor [batch, *state]")
    if not (y0.is_floating_point() or y0.is_complex()):
        raise TypeError(f"y0 must be floating point or complex, but got {y0.dtype}")
    if not tableau.adaptive:
        raise ValueError(
            f"per-sample solves need an adaptive method; {tableau.name!r} has a "
            "fixed step"
        )
    opts = dict(options or {})
    unknown = sorted(set(opts) - _OPTIONS)
    if unknown:
        raise ValueError(
            f"option(s) {', '.join(map(repr, unknown))} are not supported with "
            "per_sample=True; supported: " + ", ".join(sorted(_OPTIONS))
        )
    times = _per_sample_times(t, y0)
    dtype = y0.dtype
    work = _work_dtype(dtype)
    batch = y0.shape[0]
    y_flat = y0.reshape(batch, -1).to(work)
    real = y_flat.real.dtype
    rtol_n = _tolerance("rtol", rtol, y0, real)
    atol_n = _tolerance("atol", atol, y0, real)
    # The same warnings (and clamp of an unreachable rtol) as a shared-step solve.
    rtol_n, atol_n = _clamp_rtol(rtol_n, atol_n, real)
    t_dtype = t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32
    field = _BatchField(func, y0.shape, dtype, work, t_dtype)
    loop = _Loop(field, tableau, y_flat, times, rtol_n, atol_n, opts)
    out, stats = loop.run()
    ys = out.reshape(batch, times.shape[1], *y0.shape[1:]).to(dtype)
    return PerSampleResult(ys, stats)
