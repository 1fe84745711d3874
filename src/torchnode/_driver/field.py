"""The vector field as the solver sees it: flat state in, flat derivative out.

The wrapper is made once per solve. It counts evaluations, turns the solver's
float64 time into a tensor of the caller's time dtype, restores the caller's
state structure (shape, tuple, low-precision dtype) and checks the first output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["Field", "Layout"]


def _is_missing_grad(err: RuntimeError) -> bool:
    text = str(err)
    return "does not require grad" in text


class Layout:
    """How a flat working state ``[N]`` maps to the caller's ``y0``.

    Args:
        shapes: shape of each part (one part for a plain tensor).
        dtype: the caller's state dtype (the working dtype may be wider).
        is_tuple: whether the caller passed a tuple.
    """

    def __init__(
        self, shapes: Sequence[torch.Size], dtype: torch.dtype, is_tuple: bool
    ) -> None:
        self.shapes = [torch.Size(s) for s in shapes]
        self.numels = [s.numel() for s in self.shapes]
        self.dtype = dtype
        self.is_tuple = is_tuple
        self.numel = sum(self.numels)

    def unflatten(self, y: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """``[N]`` to the caller's structure and dtype."""
        if y.dtype != self.dtype:
            y = y.to(self.dtype)
        if not self.is_tuple:
            return y.view(self.shapes[0])
        parts = torch.split(y, self.numels)
        return tuple(p.view(s) for p, s in zip(parts, self.shapes))

    def unflatten_batch(self, ys: torch.Tensor) -> torch.Tensor | tuple:
        """``[T, N]`` to ``[T, *shape]`` (a tuple of them for tuple states)."""
        if ys.dtype != self.dtype:
            ys = ys.to(self.dtype)
        n = ys.shape[0]
        if not self.is_tuple:
            return ys.view(n, *self.shapes[0])
        parts = torch.split(ys, self.numels, dim=1)
        return tuple(p.reshape(n, *s) for p, s in zip(parts, self.shapes))

    def flatten(self, y, work_dtype: torch.dtype) -> torch.Tensor:
        """The caller's structure to ``[N]`` in ``work_dtype``."""
        if not self.is_tuple:
            return y.reshape(-1).to(work_dtype)
        return torch.cat([p.reshape(-1) for p in y]).to(work_dtype)


class _ShortPathSetting:
    """A :class:`Field` setting stored as ``_<name>`` whose every change
    re-decides the field's short path (``Field._update_fast``)."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self.attr)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.attr, value)
        obj._update_fast()


class Field:
    """Calls ``func(t, y)`` on the flat working state and counts calls.

    Args:
        func: the caller's vector field ``func(t, y)``.
        layout: the state's structure.
        t_dtype: dtype of the time tensor handed to ``func``.
        work_dtype: the solver's working dtype.
        device: where the time tensor lives.
    """

    def __init__(
        self,
        func: Callable,
        layout: Layout,
        t_dtype: torch.dtype,
        work_dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.func = func
        self.layout = layout
        self.t_dtype = t_dtype
        self.work_dtype = work_dtype
        self.device = device
        self.nfe = 0
        self.plain = not layout.is_tuple and layout.dtype == work_dtype
        self.shape = layout.shapes[0]
        # view() parses a tuple of ints faster than a torch.Size, which matters
        # at small sizes where this is a good part of a call's cost. A 0-dim
        # state views as view(()).
        self._dims = tuple(self.shape) or ((),)
        self._checked = False
        self._observer: Callable[[float], None] | None = None
        # Set when the field must run under autograd although the solve does
        # not record a graph (a field that calls torch.autograd.grad itself).
        self._grad_inside = False
        self._fast = False
        # The last time tensor made, by its float, and its version counter:
        # consecutive evaluations at one time (the last stage at t1 and the next
        # step's first; stages with equal nodes) share it instead of making
        # another, unless the field changed it in place (``t -= t0``).
        self._t_last: float | None = None
        self._tt_last: torch.Tensor | None = None
        self._tt_version = -1
        # Set when the field uses tensors found only by walking its graph.
        self.captured_through_graph = False

    # Whether a call can take the short path (a plain state whose first output
    # has been checked) is decided when one of these settings changes, not at
    # every call.
    checked = _ShortPathSetting(
        "Whether the first output has been checked (shape, dtype, device)."
    )
    grad_inside = _ShortPathSetting(
        "Whether the field runs under autograd although the solve does not record "
        "a graph (a field that calls ``torch.autograd.grad`` itself)."
    )
    observer = _ShortPathSetting("Called with each evaluation's time, when set.")

    def _update_fast(self) -> None:
        self._fast = (
            self.plain
            and self._checked
            and not self._grad_inside
            and self._observer is None
        )

    @property
    def dims(self) -> tuple | None:
        """The caller's shape as ``view`` arguments for a plain state (one
        tensor in the working dtype), where :meth:`into` can write an output
        without flattening it; ``None`` otherwise."""
        return self._dims if self.plain else None

    def into(
        self, t: float, y: torch.Tensor, perturb: int, dest: torch.Tensor
    ) -> torch.Tensor | None:
        """Evaluates like ``self(t, y, perturb)`` and copies the output into
        ``dest``, a buffer row viewed in the caller's shape; returns ``None``.

        An output that requires grad is not copied (the caller must then
        record the step under autograd), nor one of a call off the short path;
        such an output is returned flat instead, for the caller to handle.
        """
        if not (self._fast and not perturb):
            return self(t, y, perturb)
        self.nfe += 1
        tt = self._time_tensor(t)
        try:
            out = self.func(tt, y.view(*self._dims))
        except RuntimeError as err:
            return self._retry_with_grad(err, tt, y)
        if out.requires_grad:
            return out.reshape(-1)
        dest.copy_(out)
        return None

    def _time_tensor(self, t: float) -> torch.Tensor:
        tt = self._tt_last
        if tt is not None and t == self._t_last and tt._version == self._tt_version:
            return tt
        tt = torch.scalar_tensor(t, dtype=self.t_dtype, device=self.device)
        if tt.is_inference():
            # No version counter to tell an unchanged tensor by: never shared.
            self._t_last = None
            return tt
        self._t_last, self._tt_last, self._tt_version = t, tt, tt._version
        return tt

    def time(self, t: float, perturb: int = 0) -> torch.Tensor:
        tt = torch.scalar_tensor(t, dtype=self.t_dtype, device=self.device)
        if perturb:
            # One-sided limit: the next representable time in the given direction.
            tt = torch.nextafter(tt, tt + perturb)
        return tt

    def __call__(self, t: float, y: torch.Tensor, perturb: int = 0) -> torch.Tensor:
        self.nfe += 1
        if self._fast and not perturb:
            tt = self._time_tensor(t)
            try:
                return self.func(tt, y.view(*self._dims)).reshape(-1)
            except RuntimeError as err:
                return self._retry_with_grad(err, tt, y)
        if self._observer is not None:
            self._observer(t)
        tt = self.time(t, perturb)
        if self._grad_inside:
            return self._call_with_grad(tt, y)
        try:
            if self.plain:
                out = self.func(tt, y.view(*self._dims))
                if self._checked:
                    return out.reshape(-1)
            else:
                out = self.func(tt, self.layout.unflatten(y))
        except RuntimeError as err:
            return self._retry_with_grad(err, tt, y)
        if not self._checked:
            self._check(out)
        return self.layout.flatten(out, self.work_dtype)

    def _retry_with_grad(
        self, err: RuntimeError, tt: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        if not _is_missing_grad(err):
            raise err
        # The field differentiates internally (a gradient flow, a Hamiltonian):
        # from now on it runs under autograd.
        self.grad_inside = True
        return self._call_with_grad(tt, y)

    def _call_with_grad(self, tt: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        recording = torch.is_grad_enabled()
        with torch.enable_grad():
            y_in = y if y.requires_grad else y.detach().requires_grad_()
            out = self.func(tt, self.layout.unflatten(y_in))
        if not self.checked:
            self._check(out)
        out = self.layout.flatten(out, self.work_dtype)
        return out if recording else out.detach()

    def _check(self, out) -> None:
        layout = self.layout
        if layout.is_tuple:
            if not isinstance(out, (tuple, list)) or len(out) != len(layout.shapes):
                raise TypeError(
                    f"func must return a tuple of {len(layout.shapes)} tensors "
                    f"matching y0, but got {type(out).__name__}"
                )
            outs = list(out)
        else:
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    f"func must return a tensor shaped like y0, but got "
                    f"{type(out).__name__}"
                )
            outs = [out]
        for i, (o, shape) in enumerate(zip(outs, layout.shapes)):
            where = f"func's output part {i}" if layout.is_tuple else "func's output"
            if not isinstance(o, torch.Tensor):
                raise TypeError(f"{where} must be a tensor, but got {type(o).__name__}")
            if o.shape != shape:
                raise ValueError(
                    f"{where} must have y0's shape {tuple(shape)}, but got "
                    f"{tuple(o.shape)}"
                )
            if o.dtype != layout.dtype:
                raise TypeError(
                    f"{where} must have y0's dtype {layout.dtype}, but got {o.dtype}"
                )
            if o.device != self.device:
                raise ValueError(
                    f"{where} must be on y0's device {self.device}, but got {o.device}"
                )
        self.checked = True
