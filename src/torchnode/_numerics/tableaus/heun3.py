"""Heun's third-order method, three stages.

Source: K. Heun (1900), "Neue Methode zur approximativen Integration der
Differentialgleichungen einer unabhaengigen Veraenderlichen", Z. Math. Phys. 45,
23-38; tableau as in E. Hairer, S. P. Norsett and G. Wanner, Solving Ordinary
Differential Equations I, 2nd ed., Springer 1993, Section II.1, Table 1.2.
"""

from fractions import Fraction as F

from ..tableau import ButcherTableau

HEUN3 = ButcherTableau.build(
    "heun3",
    c=[0, F(1, 3), F(2, 3)],
    a=[[], [F(1, 3)], [0, F(2, 3)]],
    b=[F(1, 4), 0, F(3, 4)],
    order=3,
    interp_order=3,
    source="Heun (1900); Hairer, Norsett & Wanner, Solving ODEs I, Table II.1.2",
)
