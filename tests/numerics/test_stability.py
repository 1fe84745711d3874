"""Stability polynomials and regions against their closed forms, and the
Arnoldi eigenvalue estimate against exact spectra."""

import cmath
import math
from typing import Any

import numpy as np
import pytest
import torch

from torchnode._driver.diagnose import ritz_values
from torchnode._driver.methods import TABLEAUS
from torchnode._numerics.stability import (
    ray_radius,
    real_stability_limit,
    stability_polynomial,
    stable_step,
)


def test_polynomials_are_the_truncated_exponential_where_s_equals_p():
    for name in ("euler", "heun2", "heun3", "bosh3", "rk4"):
        coeffs = stability_polynomial(TABLEAUS[name])
        expected = [1 / math.factorial(j) for j in range(len(coeffs))]
        np.testing.assert_allclose(coeffs, expected, rtol=1e-14)
    assert len(stability_polynomial(TABLEAUS["rk4"])) == 5


def test_dopri5_polynomial_has_the_published_sixth_coefficient():
    # Hairer and Wanner II, IV.2: R(z) of DOPRI5 ends in z^6 / 600.
    coeffs = stability_polynomial(TABLEAUS["dopri5"])
    expected = [1, 1, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 600]
    np.testing.assert_allclose(coeffs, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("name", "real", "imag"),
    [
        # Closed forms: Euler [-2, 0]; RK4 reaches -2.7853 on the real axis and
        # 2 sqrt(2) on the imaginary one; RK3 reaches -2.5127 and sqrt(3).
        ("euler", 2.0, 0.0),
        ("rk4", 2.785293563405, 2 * math.sqrt(2)),
        ("heun3", 2.512745326618, math.sqrt(3)),
    ],
)
def test_region_extents_match_closed_forms(name, real, imag):
    coeffs = stability_polynomial(TABLEAUS[name])
    # Bisection finds each exit to within the 1e-9 allowed for rounding.
    assert real_stability_limit(TABLEAUS[name]) == pytest.approx(real, rel=1e-8)
    assert ray_radius(coeffs, math.pi / 2) == pytest.approx(imag, abs=1e-4)


def test_stable_step_on_each_kind_of_eigenvalue():
    coeffs = stability_polynomial(TABLEAUS["rk4"])
    real = ray_radius(coeffs, math.pi)
    # A decay: the real interval, with the safety factor.
    assert stable_step(coeffs, [-4.0]) == pytest.approx(0.9 * real / 4.0)
    # A growing mode cannot be made spuriously unstable: no limit.
    assert stable_step(coeffs, [3.0 + 1.0j]) == math.inf
    # A slightly growing oscillation is held to the imaginary extent.
    assert stable_step(coeffs, [0.01 + 2.0j]) == pytest.approx(
        0.9 * ray_radius(coeffs, math.pi / 2) / abs(0.01 + 2.0j)
    )
    # The most restrictive eigenvalue wins.
    assert stable_step(coeffs, [-1.0, -10.0]) == pytest.approx(0.9 * real / 10.0)


def test_rays_that_only_touch_the_region_get_their_tiny_true_extent():
    # |1 + iy| <= 1 + 1e-9 up to y = sqrt(2e-9); |1 + iy - y^2/2| up to
    # y = (8e-9)^(1/4): bisection finds both, far below the scan's spacing.
    euler = stability_polynomial(TABLEAUS["euler"])
    heun = stability_polynomial(TABLEAUS["heun2"])
    assert ray_radius(euler, math.pi / 2) == pytest.approx(math.sqrt(2e-9), rel=1e-3)
    assert ray_radius(heun, math.pi / 2) == pytest.approx(8e-9**0.25, rel=1e-3)
    # A barely damped oscillation: Heun's extent grows with the damping as
    # (8 |cos(angle)|)^(1/3), and the step follows it.
    mu = complex(-1e-3, 1000.0)
    extent = ray_radius(heun, cmath.phase(mu))
    assert extent == pytest.approx((8 * 1e-6) ** (1 / 3), rel=0.05)
    assert stable_step(heun, [mu]) == pytest.approx(0.9 * extent / abs(mu))


def test_stable_steps_keep_every_step_factor_inside_the_unit_disc():
    coeffs = stability_polynomial(TABLEAUS["dopri5"])
    rng = np.random.default_rng(0)
    mus = -rng.uniform(0, 1, 200) * 10 + 1j * rng.uniform(-20, 20, 200)
    for mu in mus:
        h = stable_step(coeffs, [complex(mu)])
        assert abs(np.polyval(coeffs[::-1], h * mu)) <= 1.0 + 1e-9


class _LinearField:
    """y' = a y, counting its evaluations like the solver's field wrapper."""

    def __init__(self, a: torch.Tensor) -> None:
        self.a = a
        self.nfe = 0

    def __call__(self, t: float, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.a @ y


def _linear_field(a: torch.Tensor) -> Any:
    return _LinearField(a)


def test_ritz_values_are_exact_for_a_small_linear_field():
    a = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)
    y = torch.tensor([1.0, 0.5], dtype=torch.float64)
    field = _linear_field(a)
    mus = sorted(ritz_values(field, 0.0, y, a @ y), key=lambda z: z.imag)
    assert len(mus) == 2
    np.testing.assert_allclose(mus, [-0.1 - 2.0j, -0.1 + 2.0j], atol=1e-6)
    assert field.nfe == 0  # not counted unless asked


def test_ritz_values_find_the_outer_eigenvalues_of_a_large_field():
    gen = torch.Generator().manual_seed(1)
    n = 60
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    lam = -torch.linspace(0.1, 50.0, n, dtype=torch.float64)
    a = q @ torch.diag(lam) @ q.T
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    field = _linear_field(a)
    mus = ritz_values(field, 0.0, y, a @ y, k=8, count=True)
    assert field.nfe == 8
    # Eight Krylov steps pin the extreme eigenvalue, which bounds the step.
    assert max(abs(m) for m in mus) == pytest.approx(50.0, rel=2e-2)
