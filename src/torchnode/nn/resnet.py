"""Residual networks as the explicit Euler discretisation of a neural ODE."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ._common import call_field, is_autonomous, time_like

__all__ = ["ResNet"]


class ResNet(nn.Module):
    r"""A residual network ``x_{k+1} = x_k + h * f_k(t_k, x_k)``, ``t_k = k * h``.

    With the default step ``h = 1 / n_blocks`` this is the explicit Euler method
    with ``n_blocks`` steps for ``dx/dt = f(t, x)`` over ``[0, 1]``: with
    ``shared_weights=True`` it equals ``NeuralODE(f, (0, 1), method='euler',
    options={'step_size': 1 / n_blocks})`` exactly, and with a separate block
    per step it is the Euler discretisation of a field whose weights change at
    each step. Blocks are the same vector fields the ODE layers take (an
    :class:`MLPField`, a :class:`ConvField`), so comparisons are like for like;
    time-dependent blocks are called as ``f_k(t_k, x)`` with ``t_k`` a 0-dim
    tensor, autonomous ones as ``f_k(x)`` (the rule of :class:`NeuralODE`).

    Args:
        blocks: a factory called with no arguments that returns a new block;
            or a sequence of blocks, one per step; or a single block, used for
            every step (``shared_weights=True`` required).
        n_blocks: number of steps; the length of ``blocks`` by default when a
            sequence is given.
        shared_weights: use one block (one factory call) for every step.
        step_size: ``h``; ``1 / n_blocks`` by default (so the network spans
            ``[0, n_blocks * h] = [0, 1]``).
        autonomous: ``None`` to decide from the first block's signature.

    Shape:
        - Input: ``[B, *]``, any shape the blocks accept.
        - Output: ``[B, *]``.
    """

    def __init__(
        self,
        blocks: Callable[[], nn.Module] | Sequence[nn.Module] | nn.Module,
        n_blocks: int | None = None,
        *,
        shared_weights: bool = False,
        step_size: float | None = None,
        autonomous: bool | None = None,
    ) -> None:
        super().__init__()
        if isinstance(blocks, nn.Module) and not isinstance(blocks, nn.ModuleList):
            if not shared_weights:
                raise ValueError(
                    "a single block is used for every step, so it needs "
                    "shared_weights=True; pass a factory (e.g. lambda: "
                    "MLPField(2)) for separate weights per step"
                )
            unique = [blocks]
        elif isinstance(blocks, (Sequence, nn.ModuleList)):
            unique = list(blocks)
            if shared_weights:
                raise ValueError(
                    "shared_weights=True takes a single block or a factory, not "
                    "a sequence of blocks"
                )
            if n_blocks is None:
                n_blocks = len(unique)
            if len(unique) != n_blocks:
                raise ValueError(
                    f"got {len(unique)} blocks but n_blocks={n_blocks}; they must match"
                )
        elif callable(blocks):
            if n_blocks is None:
                raise ValueError("n_blocks is needed with a block factory")
            count = 1 if shared_weights else n_blocks
            unique = [blocks() for _ in range(count)]
        else:
            raise TypeError(
                "blocks must be a factory, a sequence of modules or a module, but "
                f"got {type(blocks).__name__}"
            )
        if n_blocks is None or n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, but got {n_blocks}")
        if not unique or not all(isinstance(b, nn.Module) for b in unique):
            raise TypeError("every block must be an nn.Module")
        self.blocks = nn.ModuleList(unique)
        self.n_blocks = n_blocks
        self.shared_weights = shared_weights
        self.step_size = 1.0 / n_blocks if step_size is None else float(step_size)
        self.autonomous = is_autonomous(unique[0], autonomous, "block")

    def reset_parameters(self) -> None:
        """Resets every block's parameters."""
        for block in self.blocks:
            reset = getattr(block, "reset_parameters", None)
            if callable(reset):
                reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Runs the ``n_blocks`` residual steps."""
        h = self.step_size
        for k in range(self.n_blocks):
            block = self.blocks[0 if self.shared_weights else k]
            t = time_like(k * h, x)
            x = x + h * call_field(block, self.autonomous, t, x)
        return x

    def extra_repr(self) -> str:
        return (
            f"n_blocks={self.n_blocks}, step_size={self.step_size:g}, "
            f"shared_weights={self.shared_weights}"
        )
