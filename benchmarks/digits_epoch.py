"""W6: one training epoch of the digits ODE-Net, torchnode against torchdiffeq.

    python -m benchmarks.digits_epoch [--reps 3] [--batches 0]

The same model (the `digits` task's ODE-Net, same initial weights) trains on the
same batches with Adam; only the ODE block's solver library differs: torchnode's
`NeuralODE` against `torchdiffeq.odeint_adjoint` on the same field, both dopri5
at the task's tolerances with adjoint gradients. Repetitions alternate the two
libraries and restart from the same weights; the table gives the median epoch
time and the mean forward and backward NFE per batch.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from torchnode.tasks.registry import get_task
from torchnode.training.config import TrainConfig
from torchnode.training.loop import build_model, resolve


class _Counting(nn.Module):
    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.calls = 0

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.field(t, x)


class _TorchdiffeqBlock(nn.Module):
    """The ODE block solved by torchdiffeq's adjoint, on the same field."""

    def __init__(self, field: nn.Module, rtol: float, atol: float) -> None:
        super().__init__()
        self.field = _Counting(field)
        self.rtol, self.atol = rtol, atol

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torchdiffeq

        t = torch.tensor([0.0, 1.0], dtype=x.dtype)
        ys = torchdiffeq.odeint_adjoint(
            self.field,
            x,
            t,
            rtol=self.rtol,
            atol=self.atol,
            method="dopri5",
            adjoint_params=tuple(self.field.parameters()),
        )
        return ys[-1]


def _epoch(model: nn.Module, counter: _Counting, data, batches) -> tuple:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    nfe_f = nfe_b = 0
    start = time.perf_counter()
    for idx in batches:
        opt.zero_grad()
        counter.calls = 0
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        nfe_f += counter.calls
        counter.calls = 0
        loss.backward()
        nfe_b += counter.calls
        opt.step()
    return time.perf_counter() - start, nfe_f / len(batches), nfe_b / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batches", type=int, default=0, help="0: a whole epoch")
    args = parser.parse_args()
    config, task = resolve(TrainConfig(task="digits"))
    data = get_task("digits").load(config.seed)
    base = build_model(task, config, data)
    order = torch.randperm(
        len(data.x_train), generator=torch.Generator().manual_seed(0)
    )
    batches = list(order.split(config.batch_size))
    if args.batches:
        batches = batches[: args.batches]

    def torchnode_model() -> tuple[nn.Module, _Counting]:
        model = copy.deepcopy(base)
        counter = _Counting(model.block.field)
        model.block.field = counter
        return model, counter

    def torchdiffeq_model() -> tuple[nn.Module, _Counting]:
        model = copy.deepcopy(base)
        model.block = _TorchdiffeqBlock(model.block.field, config.rtol, config.atol)
        return model, model.block.field

    runs = {"torchnode": torchnode_model, "torchdiffeq": torchdiffeq_model}
    results: dict[str, list[tuple]] = {name: [] for name in runs}
    for rep in range(args.reps):
        names = list(runs) if rep % 2 == 0 else list(runs)[::-1]
        for name in names:
            model, counter = runs[name]()
            results[name].append(_epoch(model, counter, data, batches))
    print(
        f"digits ODE-Net, {len(batches)} batches of {config.batch_size}, dopri5 "
        f"rtol={config.rtol:g} atol={config.atol:g}, adjoint; "
        f"{torch.get_num_threads()} thread(s), median of {args.reps}"
    )
    base_time = statistics.median(r[0] for r in results["torchdiffeq"])
    print(f"{'library':12} {'epoch s':>8} {'x tdq':>6} {'NFE fwd':>8} {'NFE bwd':>8}")
    for name, rows in results.items():
        med = statistics.median(r[0] for r in rows)
        nfe_f = statistics.mean(r[1] for r in rows)
        nfe_b = statistics.mean(r[2] for r in rows)
        ratio = med / base_time
        print(f"{name:12} {med:8.2f} {ratio:6.2f} {nfe_f:8.1f} {nfe_b:8.1f}")


if __name__ == "__main__":
    main()
