"""Heun's second-order method (explicit trapezoidal rule), two stages.

An Euler predictor followed by a trapezoidal corrector.

Source: K. Heun (1900), "Neue Methode zur approximativen Integration der
Differentialgleichungen einer unabhaengigen Veraenderlichen", Z. Math. Phys. 45,
23-38; tableau as in E. Hairer, S. P. Norsett and G. Wanner, Solving Ordinary
Differential Equations I, 2nd ed., Springer 1993, Section II.1.
"""

from fractions import Fraction as F

from ..tableau import ButcherTableau

HEUN2 = ButcherTableau.build(
    "heun2",
    c=[0, 1],
    a=[[], [1]],
    b=[F(1, 2), F(1, 2)],
    order=2,
    interp_order=2,
    source="Heun (1900), Z. Math. Phys. 45; explicit trapezoidal rule",
)
