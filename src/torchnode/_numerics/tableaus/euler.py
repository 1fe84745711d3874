"""Forward Euler, one stage, order 1.

Source: L. Euler (1768), Institutionum calculi integralis, Vol. I, Sect. II,
Ch. 7; as a one-stage Runge-Kutta method in E. Hairer, S. P. Norsett and
G. Wanner, Solving Ordinary Differential Equations I, 2nd ed., Springer 1993,
Section II.1.
"""

from ..tableau import ButcherTableau

EULER = ButcherTableau.build(
    "euler",
    c=[0],
    a=[[]],
    b=[1],
    order=1,
    # Cubic Hermite on a first-order step is only first-order accurate.
    interp_order=1,
    source="Euler (1768); Hairer, Norsett & Wanner, Solving ODEs I, II.1",
)
