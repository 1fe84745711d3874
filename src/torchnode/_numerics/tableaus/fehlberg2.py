"""Fehlberg's Runge-Kutta-Fehlberg 1(2) pair, three stages.

Fehlberg built the pair to propagate the first-order formula
``b_hat = (1/256, 255/256, 0)`` and use the second-order one for the error;
here, as under ``method="fehlberg2"`` in torchdiffeq, the second-order formula
``b = (1/512, 255/256, 1/512)`` is propagated (local extrapolation). The last
stage is ``f`` at the first-order solution, not at ``y1``, so the pair is not
FSAL for the propagated solution.

Source: E. Fehlberg (1969), "Low-order classical Runge-Kutta formulas with
stepsize control and their application to some heat transfer problems",
NASA Technical Report R-315, the RK1(2) formula pair.
"""

from fractions import Fraction as F

from ..tableau import ButcherTableau

FEHLBERG2 = ButcherTableau.build(
    "fehlberg2",
    c=[0, F(1, 2), 1],
    a=[[], [F(1, 2)], [F(1, 256), F(255, 256)]],
    b=[F(1, 512), F(255, 256), F(1, 512)],
    b_hat=[F(1, 256), F(255, 256), 0],
    order=2,
    error_order=1,
    interp_order=2,
    source="Fehlberg (1969), NASA TR R-315, RK1(2)",
)
