"""Explaining a failed solve: where it stopped, which component, and what to try."""

from __future__ import annotations

import math

import torch

from .field import Field

__all__ = ["describe_non_finite", "stiffness_estimate"]

# Real-axis stability limits |dt * lambda| of the explicit methods (Hairer and
# Wanner, Solving ODEs II, IV.2), used to tell a stability-bound step.
STABILITY_LIMIT = {
    "euler": 2.0,
    "midpoint": 2.0,
    "heun2": 2.0,
    "adaptive_heun": 2.0,
    "fehlberg2": 2.0,
    "heun3": 2.5,
    "bosh3": 2.5,
    "rk4": 2.8,
    "dopri5": 3.3,
    "tsit5": 3.5,
    "dopri8": 6.0,
}


def describe_non_finite(name: str, y: torch.Tensor) -> str | None:
    """Names the first non-finite component of a flat tensor, or ``None``."""
    finite = torch.isfinite(y)
    if bool(finite.all()):
        return None
    j = int((~finite).nonzero()[0, 0])
    return f"{name}[{j}] = {y[j].item()}"


@torch.no_grad()
def stiffness_estimate(
    field: Field,
    t: float,
    y: torch.Tensor,
    f: torch.Tensor,
    iters: int = 8,
    count: bool = False,
) -> float:
    """Estimates the spectral radius of df/dy at ``(t, y)`` by power iteration
    on finite-difference Jacobian-vector products. Returns ``nan`` if it fails.

    Costs ``iters`` field evaluations, counted in the statistics only with
    ``count`` (when it steers the solve rather than explains a failure).
    """
    nfe = field.nfe
    try:
        v = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
        v = v.to(dtype=y.dtype, device=y.device)
        rho = float("nan")
        scale = float(torch.linalg.vector_norm(y)) + 1.0
        eps = math.sqrt(torch.finfo(y.real.dtype).eps) * scale
        for _ in range(iters):
            v = v / torch.linalg.vector_norm(v)
            jv = (field(t, y + eps * v) - f) / eps
            rho = float(torch.linalg.vector_norm(jv))
            if not math.isfinite(rho) or rho == 0.0:
                break
            v = jv
        return rho
    finally:
        if not count:
            field.nfe = nfe
