"""Kutta's 3/8 rule, four stages, order 4 (the method behind ``method="rk4"``).

Source: W. Kutta (1901), "Beitrag zur naeherungsweisen Integration totaler
Differentialgleichungen", Z. Math. Phys. 46, 435-453; tableau as in E. Hairer,
S. P. Norsett and G. Wanner, Solving Ordinary Differential Equations I, 2nd ed.,
Springer 1993, Section II.1, Table 1.2 ("3/8-Rule").
"""

from fractions import Fraction as F

from ..tableau import ButcherTableau

RK4 = ButcherTableau.build(
    "rk4",
    c=[0, F(1, 3), F(2, 3), 1],
    a=[[], [F(1, 3)], [F(-1, 3), 1], [1, -1, 1]],
    b=[F(1, 8), F(3, 8), F(3, 8), F(1, 8)],
    order=4,
    interp_order=3,
    source="Kutta (1901) 3/8 rule; Hairer, Norsett & Wanner, Solving ODEs I, II.1",
)
