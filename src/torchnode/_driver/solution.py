"""The result of a solve: outputs, statistics, status and dense output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch

__all__ = ["Solution", "Stats"]


@dataclass
class Stats:
    """Counters of one solve.

    Attributes:
        nfe: evaluations of the vector field in the forward pass.
        n_steps: steps attempted in the forward pass (accepted + rejected).
        n_accepted: accepted steps.
        n_rejected: rejected steps.
        nfe_backward: evaluations of the vector field in the backward pass (0
            until ``backward()`` has run through the solve). Not counted: the
            Jacobians that the implicit methods' gradients evaluate in direct
            mode (one per stage of each step).
        n_steps_backward: steps of the backward pass (adjoint solve, or steps
            recomputed by the checkpoint mode).
        n_jac: Jacobians ``df/dy`` evaluated (implicit and Rosenbrock methods).
        n_lu: LU factorisations of the iteration matrix.
        n_switches: changes of method by ``method='auto'`` (non-stiff to stiff
            or back).

    In a per-sample solve (``solve(..., per_sample=True)``) ``n_steps``,
    ``n_accepted`` and ``n_rejected`` are int64 tensors ``[batch]``, one count
    per sample; ``nfe`` stays the number of (batched) field calls.
    """

    nfe: int = 0
    n_steps: int = 0
    n_accepted: int = 0
    n_rejected: int = 0
    nfe_backward: int = 0
    n_steps_backward: int = 0
    n_jac: int = 0
    n_lu: int = 0
    n_switches: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __getitem__(self, key: str) -> int:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)


@dataclass
class Solution:
    """What :func:`torchnode.solve` returns.

    Attributes:
        ts: output times, shape ``[T]``.
        ys: states at ``ts``: shape ``[T, *y0.shape]``, or a tuple of such
            tensors for a tuple state; ``[batch, T, *state]`` (batch first) for a
            per-sample solve.
        stats: :class:`Stats` of the solve (the backward counters fill in when
            gradients are taken).
        status: ``"success"``, or ``"event"`` when a terminal event stopped the
            solve.
        event_t: the event time when ``status == "event"``, else ``None``.
    """

    ts: torch.Tensor
    ys: torch.Tensor | tuple[torch.Tensor, ...]
    stats: Stats
    status: str = "success"
    event_t: torch.Tensor | None = None
    _dense: Callable | None = field(default=None, repr=False)

    def evaluate(self, t: torch.Tensor | float) -> torch.Tensor | tuple:
        """The state at time(s) ``t`` from the method's own continuous extension.

        Args:
            t: a time or a 1-D tensor of times inside the solved interval.

        Returns:
            The state at ``t``: ``[*y0.shape]`` for a scalar ``t``, else
            ``[len(t), *y0.shape]`` (tuples for tuple states). Differentiable
            with respect to the state and parameters when the solve was.

        Raises:
            RuntimeError: the solve was run with ``dense=False``.
            ValueError: a time outside the solved interval.
        """
        if self._dense is None:
            raise RuntimeError(
                "Solution.evaluate needs the solve's step data; call "
                "torchnode.solve(..., dense=True) to keep it"
            )
        return self._dense(t)
