"""Linear stability of explicit Runge-Kutta methods.

One step of an explicit Runge-Kutta method applied to ``y' = lam * y``
multiplies ``y`` by the stability polynomial ``R(z)``, ``z = dt * lam``::

    R(z) = 1 + sum_{j=1}^{s} (b^T A^(j-1) 1) z^j

(Hairer and Wanner, Solving ODEs II, IV.2). The step is stable for that
eigenvalue when ``|R(z)| <= 1``. These functions measure the stability region
along rays from the origin, which is what a step-size cap needs: an eigenvalue
estimate ``mu`` fixes the ray (its argument) and ``|dt * mu|`` must stay below
the region's extent along it.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Iterable

import numpy as np

from .tableau import ButcherTableau

__all__ = [
    "ray_radius",
    "real_stability_limit",
    "stability_polynomial",
    "stable_step",
]

# The stability region of a consistent s-stage explicit method lies in the
# disc |z + s| <= s (Jeltsch and Nevanlinna 1981), so no ray leaves it beyond
# |z| = 2 s; the scan uses this many points per unit of radius.
_POINTS_PER_UNIT = 512
# |R| may exceed 1 by rounding where the region is tangent to a ray.
_GROWTH_SLACK = 1e-9


def stability_polynomial(tableau: ButcherTableau) -> np.ndarray:
    """Coefficients of ``R(z)`` in ascending powers, shape ``[s + 1]`` at most
    (trailing zeros dropped)."""
    cached = tableau._cache.get("stability_polynomial")
    if cached is not None:
        return cached
    a = tableau.matrix()  # strictly lower triangular: R is a polynomial
    b = np.asarray(tableau.b, dtype=np.float64)
    v = np.ones(len(b))
    coeffs = [1.0]
    for _ in range(len(b)):
        coeffs.append(float(b @ v))
        v = a @ v
    out = np.asarray(coeffs)
    nonzero = np.flatnonzero(np.abs(out) > 1e-14)
    out = out[: nonzero[-1] + 1]
    out.setflags(write=False)
    tableau._cache["stability_polynomial"] = out
    return out


def ray_radius(coeffs: np.ndarray, angle: float) -> float:
    """Extent of the stability region along the ray ``z = r * exp(i angle)``.

    Args:
        coeffs: ``R``'s coefficients, ascending (from
            :func:`stability_polynomial`).
        angle: the ray's argument in radians; ``pi`` is the negative real axis.

    Returns:
        The first ``r`` at which ``|R(r exp(i angle))|`` exceeds 1 (by more
        than rounding, 1e-9), found by a scan and then bisection; tiny where
        the region only touches the ray (the imaginary axis for methods of
        order 1 and 2 with ``s = p``: 4.5e-5 for Euler, 9.5e-3 for Heun), since
        there the step factor grows like a power of ``r``. A region that leaves
        and re-enters the ray is counted only up to its first exit.
    """
    degree = len(coeffs) - 1
    r_max = 2.0 * max(degree, 1)
    n = int(_POINTS_PER_UNIT * r_max)
    r = np.linspace(0.0, r_max, n + 1)[1:]
    ray = cmath.exp(1j * angle)
    poly = coeffs[::-1]

    def outside(radius):
        return np.abs(np.polyval(poly, radius * ray)) > 1.0 + _GROWTH_SLACK

    exits = np.flatnonzero(outside(r))
    if len(exits) == 0:
        return r_max
    # Bisect between the last point inside and the first outside: where the
    # region only touches the ray its extent is far below the scan's spacing.
    first = int(exits[0])
    lo, hi = (float(r[first - 1]) if first > 0 else 0.0), float(r[first])
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if outside(mid):
            hi = mid
        else:
            lo = mid
    return lo


def real_stability_limit(tableau: ButcherTableau) -> float:
    """Length of the stability interval on the negative real axis."""
    cached = tableau._cache.get("real_stability_limit")
    if cached is None:
        cached = ray_radius(stability_polynomial(tableau), math.pi)
        tableau._cache["real_stability_limit"] = cached
    return cached


def stable_step(
    coeffs: np.ndarray,
    eigenvalues: Iterable[complex],
    safety: float = 0.9,
    floor: float = 1e-6,
) -> float:
    """The largest step that keeps ``dt * mu`` inside the stability region for
    every eigenvalue estimate ``mu``; ``inf`` when none constrains it.

    Eigenvalues within 45 degrees of the positive real axis belong to growing
    modes, which a step cannot make spuriously unstable, and are skipped.
    Every other one is taken on its own ray, moved onto the imaginary axis if
    it lies right of it (an estimate of a slowly decaying oscillation may land
    there). Extents are floored at ``floor`` (in units of ``|dt * mu|``) so
    that no step is zero.
    """
    limit = math.inf
    for mu in eigenvalues:
        size = abs(mu)
        if size == 0.0 or not math.isfinite(size):
            continue
        if mu.real > 0 and abs(mu.imag) < mu.real:
            continue
        angle = cmath.phase(mu)
        if mu.real > 0:
            angle = math.copysign(math.pi / 2, angle)
        extent = max(ray_radius(coeffs, angle), floor)
        limit = min(limit, safety * extent / size)
    return limit
