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
