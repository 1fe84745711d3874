"""Ready-made vector fields ``f(t, x)`` for :class:`NeuralODE` and :class:`ResNet`."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from ._common import activation as make_activation
from ._common import time_like

__all__ = ["ConcatConv2d", "ConcatLinear", "ConvField", "MLPField"]


class ConcatLinear(nn.Linear):
    """A linear layer that can read the time as one extra input feature.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        time_dependent: append ``t`` to every input row.
        device, dtype: factory arguments.

    Shape:
        - t: ``()``.
        - x: ``[*, in_features]``.
        - Output: ``[*, out_features]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        time_dependent: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        self.time_dependent = time_dependent
        super().__init__(
            in_features + int(time_dependent), out_features, device=device, dtype=dtype
        )

    def forward(  # type: ignore[override]
        self, t: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        if self.time_dependent:
            tt = time_like(t, x).expand(*x.shape[:-1], 1)
            x = torch.cat([x, tt], dim=-1)
        return super().forward(x)


class ConcatConv2d(nn.Conv2d):
    """A 2-D convolution that can read the time as one extra constant channel.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: square kernel size; the padding keeps the spatial size.
        time_dependent: append a channel filled with ``t``.
        device, dtype: factory arguments.

    Shape:
        - t: ``()``.
        - x: ``[B, in_channels, H, W]``.
        - Output: ``[B, out_channels, H, W]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        time_dependent: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        self.time_dependent = time_dependent
        super().__init__(
            in_channels + int(time_dependent),
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            device=device,
            dtype=dtype,
        )

    def forward(  # type: ignore[override]
        self, t: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        if self.time_dependent:
            b, _, h, w = x.shape
            tt = time_like(t, x).expand(b, 1, h, w)
            x = torch.cat([x, tt], dim=1)
        return super().forward(x)


class MLPField(nn.Module):
    """A multilayer perceptron vector field ``f(t, x)`` on vectors.

    ``depth`` hidden layers of width ``hidden``, each followed by the activation,
    then a linear output layer. With ``time_dependent=True`` the time is appended
    to the input of every linear layer; otherwise ``t`` is accepted and ignored.

    Args:
        dim: size of the state.
        hidden: width of the hidden layers.
        depth: number of hidden layers (``depth + 1`` linear layers in all).
        activation: a name (``'tanh'``, ``'relu'``, ``'softplus'``, ``'elu'``,
            ``'silu'``, ``'gelu'``, ``'sigmoid'``) or an ``nn.Module``.
        time_dependent: whether the field reads ``t``.
        out_dim: size of the output; ``dim`` by default. A field for
            :class:`SecondOrderNeuralODE` reads ``[x, v]`` (``dim = 2 * D``) and
            returns the acceleration (``out_dim = D``).
        device, dtype: factory arguments.

    Shape:
        - t: ``()``.
        - x: ``[*, dim]``.
        - Output: ``[*, out_dim]``.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 2,
        activation: str | nn.Module = "tanh",
        time_dependent: bool = True,
        *,
        out_dim: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 0:
            raise ValueError(
                f"MLPField needs dim >= 1, hidden >= 1 and depth >= 0, but got "
                f"dim={dim}, hidden={hidden}, depth={depth}"
            )
        self.dim = dim
        self.hidden = hidden
        self.depth = depth
        self.out_dim = dim if out_dim is None else out_dim
        self.time_dependent = time_dependent
        self._activation_name = (
            activation if isinstance(activation, str) else type(activation).__name__
        )
        widths = [dim] + [hidden] * depth + [self.out_dim]
        self.layers = nn.ModuleList(
            ConcatLinear(a, b, time_dependent, device=device, dtype=dtype)
            for a, b in itertools.pairwise(widths)
        )
        self.act = make_activation(activation)

    def reset_parameters(self) -> None:
        """Re-draws every layer's weights with ``nn.Linear``'s initialisation."""
        for layer in self.layers:
            assert isinstance(layer, ConcatLinear)
            layer.reset_parameters()

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The field's value at time ``t`` and state ``x``."""
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(t, x)
            if i < n - 1:
                x = self.act(x)
        return x

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, hidden={self.hidden}, depth={self.depth}, "
            f"activation={self._activation_name!r}, "
            f"time_dependent={self.time_dependent}"
            + (f", out_dim={self.out_dim}" if self.out_dim != self.dim else "")
        )


class ConvField(nn.Module):
    """A convolutional vector field on images: the ODE-Net block of Chen et al.

    ``GroupNorm -> activation -> conv -> GroupNorm -> activation -> conv ->
    GroupNorm``, where each convolution keeps the spatial size and, with
    ``time_dependent=True``, reads ``t`` as one extra constant input channel.

    Args:
        channels: channels of the state.
        hidden_channels: channels between the two convolutions; ``channels``
            by default.
        kernel_size: square kernel size (odd).
        groups: GroupNorm groups; ``min(32, channels)`` by default. Each norm
            uses the greatest common divisor of ``groups`` and its channel
            count, so any channel count works.
        activation: a name (see :class:`MLPField`) or an ``nn.Module``.
        time_dependent: whether the field reads ``t``.
        device, dtype: factory arguments.

    Shape:
        - t: ``()``.
        - x: ``[B, channels, H, W]``.
        - Output: ``[B, channels, H, W]``.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int | None = None,
        *,
        kernel_size: int = 3,
        groups: int | None = None,
        activation: str | nn.Module = "relu",
        time_dependent: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, but got {kernel_size}")
        hidden = channels if hidden_channels is None else hidden_channels
        groups = min(32, channels) if groups is None else groups
        self.channels = channels
        self.hidden_channels = hidden
        self.kernel_size = kernel_size
        self.groups = groups
        self.time_dependent = time_dependent
        self._activation_name = (
            activation if isinstance(activation, str) else type(activation).__name__
        )
        kw = {"device": device, "dtype": dtype}
        self.norm1 = nn.GroupNorm(math.gcd(groups, channels), channels, **kw)
        self.conv1 = ConcatConv2d(channels, hidden, kernel_size, time_dependent, **kw)
        self.norm2 = nn.GroupNorm(math.gcd(groups, hidden), hidden, **kw)
        self.conv2 = ConcatConv2d(hidden, channels, kernel_size, time_dependent, **kw)
        self.norm3 = nn.GroupNorm(math.gcd(groups, channels), channels, **kw)
        self.act = make_activation(activation)

    def reset_parameters(self) -> None:
        """Re-draws the convolutions and resets the norms to the identity."""
        for m in (self.norm1, self.conv1, self.norm2, self.conv2, self.norm3):
            m.reset_parameters()

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The field's value at time ``t`` and state ``x``."""
        h = self.conv1(t, self.act(self.norm1(x)))
        h = self.conv2(t, self.act(self.norm2(h)))
        return self.norm3(h)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, hidden_channels={self.hidden_channels}, "
            f"kernel_size={self.kernel_size}, groups={self.groups}, "
            f"activation={self._activation_name!r}, "
            f"time_dependent={self.time_dependent}"
        )
