"""Heun-Euler 2(1) pair: Heun's trapezoidal method with Euler embedded.

The propagated solution is Heun's second-order method; the error estimate is its
difference from the forward Euler step, which reuses the first stage.

Source: K. Heun (1900), Z. Math. Phys. 45, 23-38 (the second-order formula);
embedded pairs of this kind are described in E. Hairer, S. P. Norsett and
G. Wanner, Solving Ordinary Differential Equations I, 2nd ed., Springer 1993,
Section II.4.
"""

from fractions import Fraction as F

from ..tableau import ButcherTableau

ADAPTIVE_HEUN = ButcherTableau.build(
    "adaptive_heun",
    c=[0, 1],
    a=[[], [1]],
    b=[F(1, 2), F(1, 2)],
    b_hat=[1, 0],
    order=2,
    error_order=1,
    interp_order=2,
    source="Heun (1900) with embedded Euler; Hairer, Norsett & Wanner, II.4",
)
