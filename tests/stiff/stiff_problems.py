"""Stiff test problems shared by the stiff-solver tests (flat state, last dim)."""

from __future__ import annotations

import torch


def robertson(t, y):
    """Robertson's chemical kinetics (Hairer and Wanner II, IV.1)."""
    y1, y2, y3 = y.unbind(-1)
    return torch.stack(
        [
            -0.04 * y1 + 1e4 * y2 * y3,
            0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 * y2,
            3e7 * y2 * y2,
        ],
        -1,
    )


def hires(t, y):
    """The HIRES plant-physiology problem (Hairer and Wanner II, IV.10)."""
    y1, y2, y3, y4, y5, y6, y7, y8 = y.unbind(-1)
    r = 280.0 * y6 * y8
    return torch.stack(
        [
            -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
            1.71 * y1 - 8.75 * y2,
            -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
            8.32 * y2 + 1.71 * y3 - 1.12 * y4,
            -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
            -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
            r - 1.81 * y7,
            -r + 1.81 * y7,
        ],
        -1,
    )


def van_der_pol(mu: float):
    """Van der Pol's oscillator ``y'' = mu (1 - y^2) y' - y`` as a system."""

    def field(t, y):
        return torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])

    return field


# Reference end points from scipy's Radau.
# Robertson on [0, 1e5] from [1, 0, 0]; rtol 1e-10, atol 1e-14.
ROBERTSON_1E5 = [0.017865921142252442, 7.274751468499725e-08, 0.9821340061102334]
# HIRES on [0, 321.8122] from [1, 0, 0, 0, 0, 0, 0, 0.0057]; rtol 1e-12, atol 1e-14.
HIRES_END = [
    0.0007371312573325112,
    0.0001442485726316075,
    5.888729740966552e-05,
    0.0011756513432830441,
    0.002386356198829717,
    0.006238968252737832,
    0.00284999839518459,
    0.002850001604815429,
]
