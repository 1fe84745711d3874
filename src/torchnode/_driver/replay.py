"""Recomputing one accepted step exactly as the solve loop computed it.

Checkpointed gradients replay each step under autograd; the operations must be
the loop's own, so the gradient equals direct backpropagation.
"""

from __future__ import annotations

import torch

from .._numerics.rk import RKStepper
from .adaptive import AcceptedStep
from .fixed import _hermite
from .problem import Problem

__all__ = ["replay_step"]


def replay_step(
    problem: Problem,
    stepper: RKStepper,
    step: AcceptedStep,
    y0: torch.Tensor,
    out_times: list[float],
    adaptive: bool,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Returns ``y1`` and the outputs at ``out_times`` (inside ``(t0, t1]``)."""
    field = problem.field
    t0, t1 = step.t0, step.t1
    f0 = field(t0, y0, step.nudge_start)
    res = stepper.step(field, t0, t1, y0, f0, perturb=step.perturb_end)
    outs: list[torch.Tensor] = []
    interp = problem.options.get("interp")
    stages = None
    # The loop reuses a free last stage for dense output; on a fixed grid with
    # one-sided evaluation it evaluates f1 just before t1 instead.
    f1 = res.f1 if adaptive or not step.perturb_end else None
    for t in out_times:
        if t == t1:
            outs.append(res.y1)
        elif adaptive:
            if stages is None:
                if f1 is None:
                    f1 = field(t1, res.y1)
                stages = stepper.dense_stages(field, t0, t1, y0, res.k, f1)
            outs.append(stepper.dense(y0, stages, t0, t1, t))
        elif interp == "linear":
            outs.append(torch.lerp(y0, res.y1, (t - t0) / (t1 - t0)))
        else:
            if f1 is None:
                f1 = field(t1, res.y1, -step.nudge_start)
            outs.append(_hermite(y0, res.y1, f0, f1, t0, t1, t))
    return res.y1, outs
