"""torchnode: neural ordinary differential equations for PyTorch.

The supported names are re-exported here; everything in a module whose name
starts with an underscore is internal.
"""

from ._api import odeint, odeint_adjoint, solve
from ._driver.methods import method_names as methods
from ._driver.solution import Solution, Stats
from ._errors import SolverError, StiffnessWarning, ToleranceWarning
from ._numerics.tableau import ButcherTableau

__all__ = [
    "ButcherTableau",
    "Solution",
    "SolverError",
    "Stats",
    "StiffnessWarning",
    "ToleranceWarning",
    "methods",
    "odeint",
    "odeint_adjoint",
    "solve",
]

__version__ = "0.1.0"
