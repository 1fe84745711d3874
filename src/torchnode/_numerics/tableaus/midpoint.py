"""Explicit midpoint rule (Runge's second-order method), two stages.

Source: C. Runge (1895), "Ueber die numerische Aufloesung von
Differentialgleichungen", Math. Ann. 46, 167-178; tableau as in E. Hairer,
S. P. Norsett and G. Wanner, Solving Ordinary Differential Equations I, 2nd ed.,
Springer 1993, Section II.1, Table 1.1.
"""

from fractions import Fraction as F

from ..tableau import ButcherTableau

MIDPOINT = ButcherTableau.build(
    "midpoint",
    c=[0, F(1, 2)],
    a=[[], [F(1, 2)]],
    b=[0, 1],
    order=2,
    interp_order=2,
    source="Runge (1895); Hairer, Norsett & Wanner, Solving ODEs I, Table II.1.1",
)
