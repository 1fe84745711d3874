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


class _StageBuffer:
    """A ``[s, N]`` stage buffer with its row views and the transposed prefixes
    ``k[:i].T`` (``prefix_t[i]``, ``i = 1..s``) made once, and the rows viewed
    in the caller's shape (``shaped``) once that shape is known."""

    __slots__ = ("_dims", "_shaped", "k", "prefix_t", "rows")

    def __init__(self, k: torch.Tensor) -> None:
        self.k = k
        self.rows = [k[i] for i in range(k.shape[0])]
        k_t = k.T
        self.prefix_t = [k_t[:, :i] for i in range(k.shape[0] + 1)]
        self._dims: tuple | None = None
        self._shaped: list[torch.Tensor] = []

    def shaped(self, dims: tuple) -> list[torch.Tensor]:
        """The rows as ``row.view(*dims)``."""
        if dims != self._dims:
            self._shaped = [row.view(*dims) for row in self.rows]
            self._dims = dims
        return self._shaped


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
        # (stage, node, row of a, whether it is the FSAL stage at (t1, y1)).
        self._plan = [
            (i, float(c), a_row, self.fsal and i == s - 1)
            for i, (c, a_row) in enumerate(self._stages, start=1)
        ]
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
        self._pair: tuple[_StageBuffer, _StageBuffer] | None = None

    def _buffer(self, y0: torch.Tensor, f0: torch.Tensor | None) -> _StageBuffer | None:
        """The persistent stage buffer for this step, or ``None`` under autograd.

        Without autograd two persistent buffers alternate: the step writes the
        one that does not hold ``f0`` (the previous step's last stage). Their row
        views and transposed prefixes are made once, which matters at small
        sizes where each tensor operation costs more than the arithmetic. Under
        autograd each step gets a fresh buffer, since the graph keeps it.
        """
        if torch.is_grad_enabled() and (
            y0.requires_grad or (f0 is not None and f0.requires_grad)
        ):
            return None
        # The stepper's dtype and device are fixed; only the size can change.
        pair = self._pair
        n = y0.shape[0]
        if pair is None or pair[0].k.shape[1] != n:
            pair = self._pair = (
                _StageBuffer(y0.new_empty((self.n_stages, n))),
                _StageBuffer(y0.new_empty((self.n_stages, n))),
            )
        return pair[1] if f0 is pair[0].rows[-1] else pair[0]

    def first_stage(
        self, field: FieldFn, t0: float, y0: torch.Tensor, nudge: int = 0
    ) -> torch.Tensor:
        """``field(t0, y0, nudge)``, written where the next :meth:`step` from
        ``y0`` keeps its first stage when that saves a copy (no autograd, and a
        field with ``into``; see :meth:`step`)."""
        dims = getattr(field, "dims", None)
        buf = None if dims is None else self._buffer(y0, None)
        if dims is None or buf is None:
            return field(t0, y0, nudge)
        into = field.into  # type: ignore[attr-defined]
        out = into(t0, y0, nudge, buf.shaped(dims)[0])
        return buf.rows[0] if out is None else out

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

        Without autograd the stages live in one of two persistent buffers, so
        the tensors in the result (``k``, and ``f1`` of an FSAL method) stay
        valid until the step after next; a field with ``dims`` and ``into``
        (:class:`~torchnode._driver.field.Field`) writes its outputs straight
        into them.
        """
        buf = self._buffer(y0, f0)
        if buf is None:
            return self._step_recorded(field, t0, t1, y0, f0, perturb)
        # The loop of _step_recorded on the persistent buffer, its views made
        # once; written out because at small sizes the Python per stage counts.
        dt = t1 - t0
        rows = buf.rows
        prefix = buf.prefix_t
        if f0 is not rows[0]:
            rows[0].copy_(f0)
        y1 = None
        # A field that can write its output straight into a row in the
        # caller's shape saves flattening it first (see Field.into).
        dims = getattr(field, "dims", None)
        into = None if dims is None else field.into  # type: ignore[attr-defined]
        shaped = None if dims is None else buf.shaped(dims)
        for i, c, a_row, at_y1 in self._plan:
            y_i = torch.addmv(y0, prefix[i], a_row, alpha=dt)
            t_i = t1 if c == 1.0 else t0 + c * dt
            pert = -1 if perturb and c == 1.0 else 0
            if into is not None:
                k_new = into(t_i, y_i, pert, shaped[i])  # type: ignore[index]
            else:
                k_new = field(t_i, y_i, pert)
            if k_new is not None:
                if k_new.requires_grad:
                    # The field reached a tensor requiring grad only now: redo
                    # the step with a buffer autograd can record.
                    return self._step_recorded(field, t0, t1, y0, f0, perturb)
                rows[i].copy_(k_new)
            if at_y1:
                y1 = y_i
        return self._finish(y0, y1, buf.k, prefix[-1], dt, rows[-1])

    def _step_recorded(
        self,
        field: FieldFn,
        t0: float,
        t1: float,
        y0: torch.Tensor,
        f0: torch.Tensor,
        perturb: bool,
    ) -> StepResult:
        """:meth:`step` on a fresh stage buffer that autograd can record."""
        dt = t1 - t0
        k = y0.new_empty((self.n_stages, y0.shape[0]))
        k[0] = f0
        y1 = None
        for i, c, a_row, at_y1 in self._plan:
            y_i = torch.addmv(y0, k[:i].T, a_row, alpha=dt)
            if c == 1.0:
                k[i] = field(t1, y_i, -1 if perturb else 0)
            else:
                k[i] = field(t0 + c * dt, y_i, 0)
            if at_y1:
                y1 = y_i
        return self._finish(y0, y1, k, k.T, dt, k[-1])

    def _finish(self, y0, y1, k, k_t, dt: float, last) -> StepResult:
        if y1 is None:
            y1 = torch.addmv(y0, k_t, self._b, alpha=dt)
        y_error = y_error2 = None
        if self._b_error is not None:
            y_error = torch.addmv(y0, k_t, self._b_error, beta=0, alpha=dt)
        if self._b_error2 is not None:
            y_error2 = torch.addmv(y0, k_t, self._b_error2, beta=0, alpha=dt)
        return StepResult(y1, last if self.fsal else None, y_error, k, y_error2)

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
