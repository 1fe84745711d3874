"""Checkpointed gradients: keep the accepted steps, recompute each in backward.

The forward pass runs without a graph and keeps ``(t0, t1, y0)`` of every
accepted step: memory ``O(steps x state)``. The backward pass walks the steps
from last to first, replays each under autograd with the loop's own operations
and chains the vector-Jacobian products, so the gradient is the derivative of
the discrete solve, the same as ``gradient='direct'``.
"""

from __future__ import annotations

import dataclasses

import torch

from .._driver.adaptive import RunResult
from .._driver.methods import MethodSpec, run_problem
from .._driver.problem import Problem
from .._driver.replay import replay_step
from .params import collect_params, run_without_graph

__all__ = ["solve_checkpoint"]


def _outputs_by_step(times: list[float], res: RunResult, direction: float):
    """For each step, the output indices in ``(t0, t1]``; and those at ``t[0]``."""
    per_step: list[list[int]] = [[] for _ in res.steps]
    at_start = []
    k = 0
    for i, t in enumerate(times):
        if t == times[0]:
            at_start.append(i)
            continue
        while (t - res.steps[k].t1) * direction > 0:
            k += 1
        per_step[k].append(i)
    return per_step, at_start


class _Checkpoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, problem, holder, y0, *params):
        # A detached copy, as in the adjoint: see there.
        run_on = dataclasses.replace(problem, y0=y0.detach())

        def run() -> RunResult:
            return run_problem(spec, run_on, record_steps=True, dense=holder["dense"])

        res = run_without_graph(run)
        holder["res"] = res
        ctx.spec, ctx.problem, ctx.res = spec, problem, res
        ctx.params = params
        return torch.stack(res.ys)

    @staticmethod
    def backward(ctx, grad_ys):
        problem: Problem = ctx.problem
        res: RunResult = ctx.res
        params = ctx.params
        field = problem.field
        nfe0 = field.nfe
        times = problem.t
        per_step, at_start = _outputs_by_step(times, res, problem.direction)
        a = torch.zeros_like(grad_ys[0])
        grads = [None] * len(params)
        adaptive = ctx.spec.adaptive
        # Tensors the field reaches only through the caller's graph (a closure
        # over a tensor computed from a parameter): every step's product goes
        # through that graph, which must outlive the first.
        retain = field.captured_through_graph
        for k in range(len(res.steps) - 1, -1, -1):
            step = res.steps[k]
            idx = per_step[k]
            with torch.enable_grad():
                y0 = step.y0.detach().requires_grad_()
                y1, outs = replay_step(
                    problem, res.stepper, step, y0, [times[i] for i in idx], adaptive
                )
                inputs = (y0, *params)
                got = torch.autograd.grad(
                    [y1, *outs],
                    inputs,
                    [a, *(grad_ys[i] for i in idx)],
                    allow_unused=True,
                    retain_graph=retain,
                )
            a = got[0] if got[0] is not None else torch.zeros_like(a)
            for j, g in enumerate(got[1:]):
                if g is not None:
                    grads[j] = g if grads[j] is None else grads[j] + g
        for i in at_start:
            a = a + grad_ys[i]
        res.stats.nfe_backward += field.nfe - nfe0
        res.stats.n_steps_backward += len(res.steps)
        field.nfe = nfe0
        return (None, None, None, a, *grads)


def solve_checkpoint(spec: MethodSpec, problem: Problem, *, dense: bool = False):
    """Solves with checkpointed gradients; returns flat outputs and the run."""
    from .time_grad import run_with_time_gradients

    params, f0 = collect_params(problem, None, "checkpoint")
    problem = dataclasses.replace(problem, f0=f0)
    holder: dict = {"dense": dense}

    def run(y0: torch.Tensor) -> torch.Tensor:
        return _Checkpoint.apply(spec, problem, holder, y0, *params)

    ys = run_with_time_gradients(problem, run, holder)
    return ys, holder["res"]
