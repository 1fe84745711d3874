"""Explaining a failed solve: where it stopped, which component, and what to try."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from .._numerics.stability import (
    real_stability_limit,
    stability_polynomial,
    stable_step,
)
from .._numerics.tableau import ButcherTableau
from .field import Field

__all__ = [
    "describe_non_finite",
    "ritz_values",
    "stability_cap",
    "stability_limit",
    "stability_poly",
    "stiffness_estimate",
]


def stability_limit(tableau: object) -> float | None:
    """Length of an explicit method's stability interval on the negative real
    axis (``|dt * lam|``), computed from its tableau; ``None`` for a method
    without a polynomial stability function (implicit, Rosenbrock, Adams)."""
    if not isinstance(tableau, ButcherTableau):
        return None
    return real_stability_limit(tableau)


def stability_poly(tableau: object) -> np.ndarray | None:
    """An explicit tableau's stability polynomial; ``None`` for other steppers
    (implicit and Rosenbrock methods need no step cap for rtol >= 1)."""
    if not isinstance(tableau, ButcherTableau):
        return None
    return stability_polynomial(tableau)


def describe_non_finite(name: str, y: torch.Tensor) -> str | None:
    """Names the first non-finite component of a flat tensor, or ``None``."""
    # A NaN or an infinity carries into the sum, so a finite sum clears every
    # entry in one pass; a non-finite one (or an overflow) gets the full check.
    if bool(torch.isfinite(y.sum())):
        return None
    finite = torch.isfinite(y)
    if bool(finite.all()):
        return None
    j = int((~finite).nonzero()[0, 0])
    return f"{name}[{j}] = {y[j].item()}"


def _probe(y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """A finite-difference step for Jacobian-vector products at ``y`` and a
    fixed-seed random unit direction of ``y``'s shape."""
    scale = float(torch.linalg.vector_norm(y)) + 1.0
    eps = math.sqrt(torch.finfo(y.real.dtype).eps) * scale
    v = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    v = v.to(dtype=y.dtype, device=y.device)
    return eps, v / torch.linalg.vector_norm(v)


@contextlib.contextmanager
def _counted(field: Field, count: bool) -> Iterator[None]:
    """Runs diagnostic evaluations, leaving them out of ``field.nfe`` unless
    ``count``."""
    nfe = field.nfe
    try:
        yield
    finally:
        if not count:
            field.nfe = nfe


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
    with _counted(field, count):
        eps, v = _probe(y)
        rho = float("nan")
        for _ in range(iters):
            v = v / torch.linalg.vector_norm(v)
            jv = (field(t, y + eps * v) - f) / eps
            rho = float(torch.linalg.vector_norm(jv))
            if not math.isfinite(rho) or rho == 0.0:
                break
            v = jv
        return rho


def _push_out(z: complex, distance: float) -> complex:
    """``z`` moved ``distance`` further from the origin along its ray."""
    size = abs(z)
    return z * (1.0 + distance / size) if size > 0 else complex(distance)


def _numerical_range(a: np.ndarray, n_angles: int = 24) -> list[complex]:
    """Points on the boundary of the numerical range {x* A x : |x| = 1}.

    For each direction ``phi``, the top eigenvector of the Hermitian part of
    ``exp(-i phi) A`` gives the boundary point furthest along ``exp(i phi)``
    (Johnson 1978).
    """
    points = []
    for phi in np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False):
        rotated = np.exp(-1j * phi) * a
        herm = (rotated + rotated.conj().T) / 2
        _, vecs = np.linalg.eigh(herm)
        x = vecs[:, -1]
        points.append(complex(x.conj() @ a @ x))
    return points


@torch.no_grad()
def ritz_values(
    field: Field,
    t: float,
    y: torch.Tensor,
    f: torch.Tensor,
    k: int = 8,
    count: bool = False,
    bound: bool = False,
) -> list[complex]:
    """Estimates the outermost eigenvalues of df/dy at ``(t, y)``, complex ones
    included, as the Ritz values of ``k`` Arnoldi steps on finite-difference
    Jacobian-vector products. Exact for a linear field with ``k >= y.numel()``.

    Ritz values lie inside the spectrum's hull, so they understate its extent
    until Arnoldi converges, and eigenvalues say nothing of the transient
    growth of a non-normal df/dy. With ``bound``, meant for bounding a step
    rather than describing the spectrum, each Ritz value is pushed outwards by
    its residual ``|J x - theta x|`` (the radius of a disc around it that holds
    an eigenvalue when df/dy is normal, Bauer-Fike), and 24 points of the
    boundary of the numerical range of the Arnoldi matrix, pushed outwards by
    the last residual, are added: when ``dt`` times the numerical range lies in
    the stability region, no power of the step's matrix has norm above
    ``1 + sqrt(2)`` (Crouzeix and Palencia 2017).

    Unlike :func:`stiffness_estimate`, which finds only the spectral radius,
    this tells a decaying oscillation (``-0.1 +- 2i``) from a decay (``-2``):
    explicit methods tolerate the first far less. Returns ``[]`` if the
    estimate fails (a non-finite evaluation). Costs up to ``k`` field
    evaluations, counted in the statistics only with ``count``.
    """
    with _counted(field, count):
        n = y.numel()
        k = max(1, min(k, n))
        eps, v = _probe(y)
        basis = [v]
        h = np.zeros((k + 1, k), dtype=np.complex128)
        m = 0
        for j in range(k):
            w = (field(t, y + eps * basis[j]) - f) / eps
            if not bool(torch.isfinite(w).all()):
                return []
            # Classical Gram-Schmidt, twice (orthogonal to working precision,
            # also in float32), one matrix product per pass.
            q = torch.stack([b.reshape(-1) for b in basis])
            for _ in range(2):
                c = q.conj() @ w.reshape(-1)
                h[: j + 1, j] += c.cpu().numpy()
                w = w - (c @ q).reshape(w.shape)
            m = j + 1
            size = float(torch.linalg.vector_norm(w))
            h[j + 1, j] = size
            if size <= 1e-12 * (np.abs(h[: j + 2, j]).max() + 1e-300):
                break  # an invariant subspace: its eigenvalues are exact
            basis.append(w / size)
        hm = h[:m, :m]
        if not np.all(np.isfinite(hm)):
            return []
        values, vectors = np.linalg.eig(hm)
        last = abs(h[m, m - 1])
        out = []
        for theta, s in zip(values, vectors.T):
            if bound:
                theta = _push_out(theta, last * abs(s[-1]) / np.linalg.norm(s))
            out.append(complex(theta))
        if bound:
            out += [complex(_push_out(z, last)) for z in _numerical_range(hm)]
        return out


def stability_cap(
    coeffs: np.ndarray,
    field: Field,
    t: Any,
    y: torch.Tensor,
    f: torch.Tensor,
    directions: Iterable[float],
) -> float:
    """The largest step for which ``dt * mu`` stays in the stability region of
    the method with stability polynomial ``coeffs``, for the padded Ritz
    values and numerical-range points ``mu`` of df/dy at ``(t, y)`` (see
    :func:`ritz_values` with ``bound``), taken in each time direction
    (``-1``: backwards, where a step multiplies by ``R(-|dt| mu)``).
    Costs up to 8 field evaluations, counted."""
    mus = ritz_values(field, t, y, f, count=True, bound=True)
    return stable_step(coeffs, [d * mu for d in directions for mu in mus])
