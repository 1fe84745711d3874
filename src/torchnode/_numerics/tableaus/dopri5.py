"""Dormand-Prince 5(4), seven stages, FSAL, with Shampine's quartic dense output.

Source: J. R. Dormand and P. J. Prince (1980), "A family of embedded Runge-Kutta
formulae", J. Comput. Appl. Math. 6(1), 19-26, Table 2. Dense output: L. F.
Shampine (1986), "Some practical Runge-Kutta formulas", Math. Comp. 46(173),
135-150 (midpoint weights as in Hairer, Norsett and Wanner, Solving ODEs I, II.6).
"""

from fractions import Fraction as F

from ..tableau import ButcherTableau, Number, hermite_interp_from_midpoint

_B: list[Number] = [
    F(35, 384),
    0,
    F(500, 1113),
    F(125, 192),
    F(-2187, 6784),
    F(11, 84),
    0,
]
_C_MID: list[Number] = [
    F(6025192743, 30085553152) / 2,
    0,
    F(51252292925, 65400821598) / 2,
    F(-2691868925, 45128329728) / 2,
    F(187940372067, 1594534317056) / 2,
    F(-1776094331, 19743644256) / 2,
    F(11237099, 235043384) / 2,
]

DOPRI5 = ButcherTableau.build(
    "dopri5",
    c=[0, F(1, 5), F(3, 10), F(4, 5), F(8, 9), 1, 1],
    a=[
        [],
        [F(1, 5)],
        [F(3, 40), F(9, 40)],
        [F(44, 45), F(-56, 15), F(32, 9)],
        [F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)],
        [F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)],
        _B[:6],
    ],
    b=_B,
    b_hat=[
        F(5179, 57600),
        0,
        F(7571, 16695),
        F(393, 640),
        F(-92097, 339200),
        F(187, 2100),
        F(1, 40),
    ],
    order=5,
    error_order=4,
    fsal=True,
    interp=hermite_interp_from_midpoint(_B, _C_MID, f1_stage=6),
    interp_order=4,
    source="Dormand & Prince (1980) Table 2; dense output Shampine (1986)",
)
