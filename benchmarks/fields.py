"""Vector fields used by the workloads, and the call-counting wrapper."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn


class CountingField(nn.Module):
    """Wraps a field ``f(t, y)`` and counts how often it is called.

    Every library receives the same wrapper, so counts are comparable. The
    ``args`` keyword is accepted (and ignored) for libraries that pass one.
    """

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.calls = 0

    def forward(self, t: Tensor, y: Tensor, args: object = None) -> Tensor:
        self.calls += 1
        return self.field(t, y)


class LinearField(nn.Module):
    """dy/dt = A y for a fixed matrix A (stored as a buffer)."""

    def __init__(self, matrix: Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return y @ self.matrix.T


class MLPField(nn.Module):
    """Autonomous field: ``nn.Sequential`` of Linear and Tanh layers.

    Weights are drawn uniformly from +-1/sqrt(fan_in) with a fixed seed, then
    multiplied by ``scale`` (biases are not scaled).
    """

    def __init__(self, sizes: list[int], seed: int, scale: float = 1.0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            if i > 0:
                layers.append(nn.Tanh())
            layers.append(_seeded_linear(n_in, n_out, gen, scale))
        self.net = nn.Sequential(*layers)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.net(y)


def _seeded_linear(n_in: int, n_out: int, gen: torch.Generator, scale: float):
    layer = nn.Linear(n_in, n_out)
    bound = 1.0 / n_in**0.5
    with torch.no_grad():
        layer.weight.copy_(torch.rand(n_out, n_in, generator=gen) * 2 - 1)
        layer.bias.copy_(torch.rand(n_out, generator=gen) * 2 - 1)
        layer.weight.mul_(bound * scale)
        layer.bias.mul_(bound)
    return layer


class VanDerPol(nn.Module):
    """Van der Pol oscillator x'' = mu (1 - x^2) x' - x as a first-order system."""

    def __init__(self, mu: float) -> None:
        super().__init__()
        self.mu = mu

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, self.mu * (1 - x * x) * v - x], dim=-1)
