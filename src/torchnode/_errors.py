"""Exceptions and warnings raised by torchnode."""

from __future__ import annotations

__all__ = ["SolverError", "StiffnessWarning", "ToleranceWarning"]


class SolverError(RuntimeError):
    """A solve that could not finish: the step size underflowed, the state became
    non-finite, the step budget ran out, or an implicit method's Newton iteration
    failed.

    Attributes:
        t: the time reached (float), in the caller's time coordinate.
        dt: the last step size tried (float).
        reason: a short machine-readable code: ``"dt_underflow"``,
            ``"non_finite"``, ``"max_num_steps"``, ``"event_search"`` or ``"newton"``.
    """

    def __init__(self, message: str, *, t: float, dt: float, reason: str) -> None:
        super().__init__(message)
        self.t = t
        self.dt = dt
        self.reason = reason


class ToleranceWarning(UserWarning):
    """A tolerance was outside the range the solver can honour and was adjusted."""


class StiffnessWarning(UserWarning):
    """The step size is pinned by stability rather than accuracy."""
