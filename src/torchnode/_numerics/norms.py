"""Error norms of the scaled local error ``y_error / (atol + rtol * max(|y0|, |y1|))``.

A step is accepted when the norm is at most 1. Every norm here takes the scaled
error as a flat tensor and returns a 0-dim tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

Norm = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["Norm", "make_mixed_rms", "rms_norm", "scaled_error"]


def rms_norm(ratio: torch.Tensor) -> torch.Tensor:
    """Root mean square over every component (Hairer, Norsett & Wanner I, II.4)."""
    return torch.linalg.vector_norm(ratio) / math.sqrt(max(ratio.numel(), 1))


def make_mixed_rms(sizes: Sequence[int], include: Sequence[bool] | None = None) -> Norm:
    """The maximum over the parts of a tuple state of each part's RMS norm.

    This is torchdiffeq's default for tuple states, so that a large part does
    not drown a small one. ``include`` drops parts from the norm: leaving the
    parameter adjoint out of the adjoint solve's norm gives the seminorm of
    Kidger, Chen and Lyons (2021), "Hey, that's not an ODE".

    Args:
        sizes: number of elements of each part, in order; they tile the flat
            state.
        include: which parts count; all by default.
    """
    sizes = [int(s) for s in sizes]
    keep = [True] * len(sizes) if include is None else list(include)
    bounds = []
    start = 0
    for size, k in zip(sizes, keep):
        if k and size > 0:
            bounds.append((start, start + size))
        start += size
    if not bounds:
        raise ValueError("the norm must include at least one non-empty part")
    if len(bounds) == 1:
        lo, hi = bounds[0]
        return lambda ratio: rms_norm(ratio[lo:hi])

    def mixed(ratio: torch.Tensor) -> torch.Tensor:
        return torch.stack([rms_norm(ratio[lo:hi]) for lo, hi in bounds]).amax()

    return mixed


def scaled_error(
    y0: torch.Tensor,
    y1: torch.Tensor,
    y_error: torch.Tensor,
    rtol: float | torch.Tensor,
    atol: float | torch.Tensor,
) -> torch.Tensor:
    """``|y_error| / (atol + rtol * max(|y0|, |y1|))``, elementwise, as a new tensor."""
    scale = torch.maximum(y0.abs(), y1.abs())
    scale.mul_(rtol).add_(atol)
    if y_error.is_complex():
        return y_error.abs().div_(scale)
    return y_error / scale
