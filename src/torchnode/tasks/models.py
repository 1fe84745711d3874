"""Model builders for the registered tasks.

Every builder takes the model kind (``"node"``, ``"anode"`` or ``"resnet"``), the
task's data and the solver settings, and returns an ``nn.Module``. The ODE
blocks come from :mod:`torchnode.nn`; this module only wires stems, heads and
read-outs around them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "Forecaster",
    "ODENet",
    "SolverSettings",
    "VectorModel",
    "ode_blocks",
    "solver_overrides",
]


@dataclass(frozen=True)
class SolverSettings:
    """How the ODE blocks of a model integrate."""

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-4
    gradient: str = "adjoint"
    options: dict[str, Any] | None = None

    def kwargs(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "rtol": self.rtol,
            "atol": self.atol,
            "gradient": self.gradient,
            "options": None if self.options is None else dict(self.options),
        }


def ode_blocks(model: nn.Module) -> list[nn.Module]:
    """The ODE layers inside ``model`` (modules that count evaluations)."""
    return [m for m in model.modules() if hasattr(m, "nfe_forward")]


def _nfe(block: nn.Module, name: str) -> int:
    value = getattr(block, name, 0)
    return int(value or 0)


def count_nfe(model: nn.Module) -> tuple[int, int]:
    """Forward and backward evaluations of the last pass through ``model``."""
    blocks = ode_blocks(model)
    return (
        sum(_nfe(b, "nfe_forward") for b in blocks),
        sum(_nfe(b, "nfe_backward") for b in blocks),
    )


def _set(block: nn.Module, key: str, value: Any) -> None:
    if key in ("rtol", "atol"):
        getattr(block, key).fill_(float(value))
    elif key == "t_span":
        old: Any = block.t_span
        block.t_span = torch.as_tensor(value, dtype=old.dtype)
    else:
        setattr(block, key, value)


@contextlib.contextmanager
def solver_overrides(model: nn.Module, **settings: Any) -> Iterator[None]:
    """Temporarily change the solver settings of every ODE block of ``model``.

    Keys: ``method``, ``rtol``, ``atol``, ``options``, ``gradient``, ``t_span``
    and ``t_eval``.
    """
    saved = []
    try:
        for block in ode_blocks(model):
            for key, value in settings.items():
                old = getattr(block, key)
                saved.append((block, key, old.clone() if torch.is_tensor(old) else old))
                _set(block, key, value)
        yield
    finally:
        for block, key, value in reversed(saved):
            _set(block, key, value)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ODENet(nn.Module):
    """Image classifier: conv stem, one continuous block, norm, pool, linear head.

    ``model`` picks the block: a :class:`~torchnode.nn.NeuralODE` over a
    :class:`~torchnode.nn.ConvField`, an augmented one with ``augment``
    extra zero channels, or a discrete :class:`~torchnode.nn.ResNet` of
    ``n_blocks`` convolutional residual blocks. The stem's first convolution
    has stride ``stride``; ``downsample`` more 4x4 stride-2 convolutions follow
    it, each halving the resolution the block runs at.
    """

    def __init__(
        self,
        model: str,
        in_channels: int,
        n_classes: int,
        *,
        width: int,
        solver: SolverSettings,
        stride: int = 1,
        augment: int = 8,
        n_blocks: int = 4,
        downsample: int = 0,
    ) -> None:
        super().__init__()
        from torchnode.nn import AugmentedNeuralODE, ConvField, NeuralODE, ResNet

        stem: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, stride=stride, padding=1),
            _group_norm(width),
            nn.ReLU(),
        ]
        for _ in range(downsample):
            # Chen et al. (2018)'s ODE-Net halves the resolution twice this
            # way before its ODE block.
            stem += [
                nn.Conv2d(width, width, 4, stride=2, padding=1),
                _group_norm(width),
                nn.ReLU(),
            ]
        self.stem = nn.Sequential(*stem)
        out = width
        block: nn.Module
        if model == "node":
            block = NeuralODE(ConvField(width, width), **solver.kwargs())
        elif model == "anode":
            block = AugmentedNeuralODE(
                ConvField(width + augment, width),
                augment,
                return_augmented=True,
                **solver.kwargs(),
            )
            out = width + augment
        elif model == "resnet":
            block = ResNet(lambda: ConvField(width, width), n_blocks)
        else:
            raise ValueError(f"unknown model {model!r}")
        self.block = block
        self.head = nn.Sequential(
            _group_norm(out),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(out, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


class VectorModel(nn.Module):
    """A flow on vectors followed by a linear read-out.

    For ``"node"`` the state is the input itself; for ``"anode"`` it gains
    ``augment`` zero coordinates; ``"resnet"`` stacks ``n_blocks`` residual MLP
    blocks. The read-out maps the final state to ``n_out`` values.
    """

    def __init__(
        self,
        model: str,
        dim: int,
        n_out: int,
        *,
        hidden: int,
        solver: SolverSettings,
        augment: int = 1,
        n_blocks: int = 10,
    ) -> None:
        super().__init__()
        from torchnode.nn import AugmentedNeuralODE, MLPField, NeuralODE, ResNet

        state = dim
        flow: nn.Module
        if model == "node":
            flow = NeuralODE(MLPField(dim, hidden, 2, "relu", False), **solver.kwargs())
        elif model == "anode":
            state = dim + augment
            flow = AugmentedNeuralODE(
                MLPField(state, hidden, 2, "relu", False),
                augment,
                return_augmented=True,
                **solver.kwargs(),
            )
        elif model == "resnet":
            flow = ResNet(lambda: MLPField(dim, hidden, 2, "relu", False), n_blocks)
        else:
            raise ValueError(f"unknown model {model!r}")
        self.flow = flow
        self.state_dim = state
        self.readout = nn.Linear(state, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.flow(x))

    def trajectory(self, x: torch.Tensor, n_times: int = 40) -> torch.Tensor:
        """States ``[n_times, N, state]`` along the flow from ``x`` (ODE models)."""
        from torchnode import solve

        flow: Any = self.flow
        pad = self.state_dim - x.shape[1]
        y0 = torch.cat([x, x.new_zeros(x.shape[0], pad)], 1) if pad else x
        t0, t1 = (float(v) for v in flow.t_span)
        t = torch.linspace(t0, t1, n_times, dtype=x.dtype)
        with torch.no_grad():
            ys: Any = solve(flow.field, y0, t, rtol=1e-5, atol=1e-6).ys
        return ys


class Forecaster(nn.Module):
    """Continuous-time forecaster: encode a history, integrate, read out.

    The input is a history of ``history`` consecutive observations of a
    ``dim``-dimensional series, flattened to ``[N, history * dim]``. The ODE state
    is that vector (plus ``augment`` zero coordinates for ``"anode"``); a linear
    read-out maps each state to an observation. ``forward`` predicts the next
    ``horizon`` observations, spaced ``dt`` apart in ODE time: ``[N, horizon,
    dim]``. :meth:`rollout` predicts any number of steps.
    """

    def __init__(
        self,
        model: str,
        dim: int,
        *,
        history: int,
        horizon: int,
        dt: float,
        hidden: int,
        solver: SolverSettings,
        augment: int = 0,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        from torchnode.nn import AugmentedNeuralODE, MLPField, NeuralODE

        self.dim, self.history, self.horizon, self.dt = dim, history, horizon, dt
        state = dim * history
        t_eval = self.times(horizon)
        if model == "node":
            ode: nn.Module = NeuralODE(
                MLPField(state, hidden, 2, activation, False),
                (0.0, float(t_eval[-1])),
                t_eval=t_eval,
                **solver.kwargs(),
            )
        elif model == "anode":
            ode = AugmentedNeuralODE(
                MLPField(state + augment, hidden, 2, activation, False),
                augment,
                t_span=(0.0, float(t_eval[-1])),
                t_eval=t_eval,
                return_augmented=True,
                **solver.kwargs(),
            )
            state += augment
        else:
            raise ValueError(f"unknown model {model!r}")
        self.ode = ode
        self.readout = nn.Linear(state, dim)
        if history == 1 and augment == 0:
            # Start as the identity so that the state is the observation.
            with torch.no_grad():
                self.readout.weight.copy_(torch.eye(dim))
                self.readout.bias.zero_()

    def times(self, steps: int) -> torch.Tensor:
        return torch.arange(steps + 1, dtype=torch.float32) * self.dt

    def _run(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        ys = self.ode(x)  # [steps + 1, N, state]
        return self.readout(ys[1:]).transpose(0, 1)  # [N, steps, dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, self.horizon)

    def rollout(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """Predictions ``[N, steps, dim]`` for the ``steps`` times after ``x``."""
        t = self.times(steps).to(x)
        with solver_overrides(self, t_eval=t, t_span=(0.0, float(t[-1]))):
            return self._run(x, steps)
