"""Shared pieces of the layers: activations, call conventions, time tensors."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["activation", "call_field", "is_autonomous", "time_like"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def activation(name: str | nn.Module) -> nn.Module:
    """A fresh activation module from its name, or the module itself."""
    if isinstance(name, nn.Module):
        return name
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"activation must be one of {', '.join(sorted(_ACTIVATIONS))} or an "
            f"nn.Module, but got {name!r}"
        ) from None


def _forward_of(field: Callable) -> Callable:
    # torch.compile wraps a module in an object whose forward takes *args.
    field = getattr(field, "_orig_mod", field)
    if isinstance(field, nn.Module):
        return field.forward
    return field


def is_autonomous(field: Callable, override: bool | None, name: str = "field") -> bool:
    """Whether ``field`` is called as ``field(x)`` rather than ``field(t, x)``.

    The rule: with ``override`` given, it wins. Otherwise the signature of the
    field's ``forward`` (of the module ``torch.compile`` wrapped, if any) is
    read once: a field taking exactly one required positional argument and no
    ``*args`` is autonomous; anything else is called as ``field(t, x)``.
    """
    if override is not None:
        return bool(override)
    try:
        sig = inspect.signature(_forward_of(field))
    except (TypeError, ValueError):
        return False
    required = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return False
        if (
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.default is p.empty
        ):
            required += 1
    if required == 0:
        raise TypeError(
            f"{name} must take the state as a positional argument, as "
            f"{name}(t, x) or {name}(x)"
        )
    return required == 1


def call_field(
    field: Callable, autonomous: bool, t: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """Calls ``field`` with its own convention."""
    return field(x) if autonomous else field(t, x)


def time_like(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """``t`` as a 0-dim tensor with ``x``'s dtype and device."""
    return torch.as_tensor(t, dtype=x.dtype, device=x.device)
