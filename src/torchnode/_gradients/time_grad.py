"""Gradients with respect to the output times, for every gradient mode.

For the exact flow ``y(t_i)`` of ``dy/dt = f(t, y)``:

* an output time moves its output along the field: ``dL/dt_i += <g_i, f(t_i, y_i)>``;
* the start time shifts the whole solution: ``dL/dt_0 -= <a_0, f(t_0, y_0)>``, where
  ``a_0 = dL/dy0`` is the total adjoint at the start.

Two identity autograd nodes attach these terms: one on the outputs, one on the
initial state (where autograd delivers ``a_0``, whichever mode computed it). The
solver itself runs on float times and carries no graph to ``t``. For a
discretised solve these are the gradients of the exact flow, which differ from
the derivative of the discrete map by the discretisation error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._driver.problem import Problem

__all__ = ["run_with_time_gradients"]


def _inner(g: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    if g.is_complex():
        return (g.conj() * f).real.sum()
    return (g * f).sum()


class _TimeAtStart(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y0: torch.Tensor, t0: torch.Tensor, f0: torch.Tensor):
        ctx.save_for_backward(f0)
        return y0.view_as(y0)

    @staticmethod
    def backward(ctx, a0: torch.Tensor):
        (f0,) = ctx.saved_tensors
        return a0, -_inner(a0, f0).to(a0.real.dtype), None


class _TimeAtOutputs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ys: torch.Tensor, t: torch.Tensor, fs: torch.Tensor):
        ctx.save_for_backward(fs)
        ctx.t_dtype = t.dtype
        return ys.view_as(ys)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (fs,) = ctx.saved_tensors
        if g.is_complex():
            gt = (g.conj() * fs).real.flatten(1).sum(1)
        else:
            gt = (g * fs).flatten(1).sum(1)
        return g, gt.to(ctx.t_dtype), None


def run_with_time_gradients(
    problem: Problem, solve: Callable[[torch.Tensor], torch.Tensor], holder: dict
) -> torch.Tensor:
    """Runs ``solve(y0) -> ys [T, N]``, and when ``problem.t_tensor`` requires
    grad (and autograd is on) attaches its gradient.

    Args:
        problem: the normalised problem.
        solve: the solve in whatever gradient mode, from a flat initial state;
            it leaves its :class:`RunResult` in ``holder['res']``.
        holder: where ``solve`` leaves its run.

    The time gradients cost ``len(t)`` evaluations of the field (``len(t) - 1``
    when ``problem.f0`` holds the one at the start already; it serves both
    terms, the first output being ``y0``), counted in the run's forward NFE.
    """
    if not (problem.t_tensor.requires_grad and torch.is_grad_enabled()):
        return solve(problem.y0)
    y0, t = problem.y0, problem.t_tensor
    field = problem.field

    def field_at(t_i: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return field(float(t_i), y)

    with torch.no_grad():
        f0 = problem.f0 if problem.f0 is not None else field_at(t[0], y0.detach())
    y0_in = _TimeAtStart.apply(y0, t[0], f0)
    ys = solve(y0_in)
    with torch.no_grad():
        rest = [field_at(t[i], ys[i].detach()) for i in range(1, len(t))]
        fs = torch.stack([f0, *rest])
    holder["res"].stats.nfe = field.nfe
    return _TimeAtOutputs.apply(ys, t, fs)
