"""One step of an explicit Runge-Kutta method, and its dense output.

The state is a flat tensor ``[N]``. Stages are kept in one ``[s, N]`` buffer so
that each stage combination ``y0 + dt * sum_j a_ij k_j`` is a single ``addmv``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from .tableau import ButcherTableau

# field(t, y, perturb) -> dy/dt; perturb is 0, or +1/-1 to evaluate just after or
# just before t (a one-sided limit at a discontinuity).
FieldFn = Callable[..., torch.Tensor]

__all__ = ["RKStepper", "StepResult"]


class StepResult(NamedTuple):
    """One attempted step.

    ``y1`` is the candidate ``[N]``; ``f1`` the field at ``(t1, y1)`` when the
    method provides it for free (FSAL), else ``None``; ``y_error`` the embedded
    error estimate ``[N]`` (``None`` for fixed-step methods); ``k`` the stages
    ``[s, N]``; ``y_error2`` the second estimate of DOP853, else ``None``.
    """

    y1: torch.Tensor
    f1: torch.Tensor | None
    y_error: torch.Tensor | None
    k: torch.Tensor
    y_error2: torch.Tensor | None


def _hermite_weights(b: np.ndarray, f1_index: int, n_rows: int) -> np.ndarray:
    """Per-stage coefficients of the cubic Hermite interpolant on (y0, f0, y1, f1).

    ``y(theta) = y0 + (3 theta^2 - 2 theta^3)(y1 - y0) + dt [(theta - 2 theta^2 +
    theta^3) f0 + (theta^3 - theta^2) f1]`` with ``y1 - y0 = dt sum b_i k_i``.
    Returns ``[n_rows, 3]`` coefficients of ``theta, theta^2, theta^3``.
    """
    p = np.zeros((n_rows, 3))
    p[: len(b), 1] += 3.0 * b
    p[: len(b), 2] += -2.0 * b
    p[0] += [1.0, -2.0, 1.0]
    p[f1_index] += [0.0, -1.0, 1.0]
    return p


class RKStepper:
    """Takes steps of one tableau in one dtype on one device.

    Args:
        tableau: the method.
        dtype: the working dtype of the flat state.
        device: the state's device.
    """

    def __init__(
        self, tableau: ButcherTableau, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.tableau = tableau
        self.fsal = tableau.fsal
        s = tableau.n_stages
        self.n_stages = s

        def vec(values) -> torch.Tensor:
            return torch.tensor(np.asarray(values, dtype=np.float64)).to(
                dtype=dtype, device=device
            )

        self._stages = [(tableau.c[i], vec(tableau.a[i])) for i in range(1, s)]
        self._b = vec(tableau.b)
        self._b_error = None if tableau.b_error is None else vec(tableau.b_error)
        self._b_error2 = None if tableau.b_error2 is None else vec(tableau.b_error2)
        self._extra = [
            (c, vec(row)) for c, row in zip(tableau.extra_c, tableau.extra_a)
        ]
        if tableau.interp is not None:
            self._interp = np.asarray(tableau.interp, dtype=np.float64)
            # Rows for the stages k plus the extra dense-output stages.
            self.dense_needs_f1 = False
        else:
            f1_index = s - 1 if self.fsal else s
            n_rows = s if self.fsal else s + 1
            self._interp = _hermite_weights(np.asarray(tableau.b), f1_index, n_rows)
            self.dense_needs_f1 = not self.fsal
        self._dtype = dtype
        self._device = device

    def step(
        self,
        field: FieldFn,
        t0: float,
        t1: float,
        y0: torch.Tensor,
        f0: torch.Tensor,
        perturb: bool = False,
    ) -> StepResult:
        """Attempts the step from ``(t0, y0)`` to ``t1``; ``f0 = field(t0, y0)``.

        ``t1`` is passed rather than recomputed from ``t0 + dt`` so that a step
        clipped to an end point lands on it to the last bit, and no stage is
        evaluated outside ``[t0, t1]``.
        """
        dt = t1 - t0
        k = y0.new_empty((self.n_stages, y0.shape[0]))
        k[0] = f0
        y1 = None
        last = self.n_stages - 1
        for i, (c, a_row) in enumerate(self._stages, start=1):
            y_i = torch.addmv(y0, k[:i].T, a_row, alpha=dt)
            if c == 1.0:
                t_i = t1
                pert = -1 if perturb else 0
            else:
                t_i = t0 + c * dt
                pert = 0
            if self.fsal and i == last:
                y1 = y_i
            k[i] = field(t_i, y_i, pert)
        if y1 is None:
            y1 = torch.addmv(y0, k.T, self._b, alpha=dt)
        y_error = y_error2 = None
        if self._b_error is not None:
            y_error = torch.addmv(y0, k.T, self._b_error, beta=0, alpha=dt)
        if self._b_error2 is not None:
            y_error2 = torch.addmv(y0, k.T, self._b_error2, beta=0, alpha=dt)
        f1 = k[last] if self.fsal else None
        return StepResult(y1, f1, y_error, k, y_error2)

    def dense_stages(
        self,
        field: FieldFn,
        t0: float,
        t1: float,
        y0: torch.Tensor,
        k: torch.Tensor,
        f1: torch.Tensor,
    ) -> torch.Tensor:
        """All the stages dense output needs, ``[rows, N]``.

        Appends ``f1`` for cubic Hermite on a non-FSAL method, or evaluates the
        extra stages of a method with a high-order continuous extension.
        """
        if self.dense_needs_f1:
            return torch.cat([k, f1[None]])
        if not self._extra:
            return k
        dt = t1 - t0
        stages = [k]
        kk = k
        for c, a_row in self._extra:
            y_i = torch.addmv(y0, kk.T, a_row, alpha=dt)
            stages.append(field(t0 + c * dt, y_i, 0)[None])
            kk = torch.cat(stages)
        return kk

    def dense_weights(self, theta: float) -> torch.Tensor:
        """Per-stage weights of the dense output at ``theta`` in [0, 1]."""
        powers = theta ** np.arange(1, self._interp.shape[1] + 1)
        w = self._interp @ powers
        return torch.tensor(w).to(dtype=self._dtype, device=self._device)

    def dense(
        self,
        y0: torch.Tensor,
        stages: torch.Tensor,
        t0: float,
        t1: float,
        t: float,
    ) -> torch.Tensor:
        """The continuous extension at time ``t`` inside ``[t0, t1]``."""
        dt = t1 - t0
        theta = (t - t0) / dt if dt != 0 else 1.0
        return torch.addmv(y0, stages.T, self.dense_weights(theta), alpha=dt)
