"""Registry of explicit Runge-Kutta tableaus, keyed by torchdiffeq's method names.

Each method lives in its own module with a docstring citing where its
coefficients come from. ``FIXED_GRID_NAMES`` lists the methods without an error
estimate (``b_error is None``); ``ADAPTIVE_NAMES`` those with one.
"""

from ..tableau import ButcherTableau
from .adaptive_heun import ADAPTIVE_HEUN
from .bosh3 import BOSH3
from .dopri5 import DOPRI5
from .dopri8 import DOPRI8
from .euler import EULER
from .fehlberg2 import FEHLBERG2
from .heun2 import HEUN2
from .heun3 import HEUN3
from .midpoint import MIDPOINT
from .rk4 import RK4
from .tsit5 import TSIT5

__all__ = ["ADAPTIVE_NAMES", "FIXED_GRID_NAMES", "TABLEAUS"]

FIXED_GRID_NAMES: tuple[str, ...] = ("euler", "midpoint", "heun2", "heun3", "rk4")
ADAPTIVE_NAMES: tuple[str, ...] = (
    "adaptive_heun",
    "fehlberg2",
    "bosh3",
    "dopri5",
    "tsit5",
    "dopri8",
)

TABLEAUS: dict[str, ButcherTableau] = {
    tab.name: tab
    for tab in (
        EULER,
        MIDPOINT,
        HEUN2,
        HEUN3,
        RK4,
        ADAPTIVE_HEUN,
        FEHLBERG2,
        BOSH3,
        DOPRI5,
        TSIT5,
        DOPRI8,
    )
}

if set(TABLEAUS) != set(FIXED_GRID_NAMES) | set(ADAPTIVE_NAMES):
    raise RuntimeError("tableau registry and name lists disagree")
