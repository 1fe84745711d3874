"""Stiff test problems shared by the stiff-solver tests (state in the last dim).

Robertson's kinetics (Hairer and Wanner II, IV.1) and the HIRES plant-physiology
problem (II, IV.10), with their scipy Radau end points, are the benchmark's
(``benchmarks.stiff``); Van der Pol is parametrised by ``mu`` here.
"""

from __future__ import annotations

import torch
from benchmarks.stiff import PROBLEMS
from benchmarks.stiff import hires_t as hires
from benchmarks.stiff import rob_t as robertson

__all__ = ["HIRES_END", "ROBERTSON_1E5", "hires", "robertson", "van_der_pol"]

# y(1e5) of Robertson from [1, 0, 0]; y(321.8122) of HIRES.
ROBERTSON_1E5 = PROBLEMS["robertson"][4]
HIRES_END = PROBLEMS["hires"][4]


def van_der_pol(mu: float):
    """Van der Pol's oscillator ``y'' = mu (1 - y^2) y' - y`` as a system."""

    def field(t, y):
        return torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])

    return field
