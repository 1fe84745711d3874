"""Bogacki-Shampine 3(2) pair, four stages, FSAL.

Dense output is the cubic Hermite interpolant on ``(y0, f0, y1, f1)``
(``interp=None``), which is third-order accurate for this pair.

Source: P. Bogacki and L. F. Shampine (1989), "A 3(2) pair of Runge-Kutta
formulas", Appl. Math. Lett. 2(4), 321-325.
"""

from fractions import Fraction as F

from ..tableau import ButcherTableau, Number

_B: list[Number] = [F(2, 9), F(1, 3), F(4, 9), 0]

BOSH3 = ButcherTableau.build(
    "bosh3",
    c=[0, F(1, 2), F(3, 4), 1],
    a=[[], [F(1, 2)], [0, F(3, 4)], _B[:3]],
    b=_B,
    b_hat=[F(7, 24), F(1, 4), F(1, 3), F(1, 8)],
    order=3,
    error_order=2,
    fsal=True,
    interp_order=3,
    source="Bogacki & Shampine (1989), Appl. Math. Lett. 2(4)",
)
