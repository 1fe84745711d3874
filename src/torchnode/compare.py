"""Side-by-side comparison of a ResNet, a neural ODE and an augmented neural ODE.

:func:`run_comparison` trains the three models (and a regularised neural ODE)
on one task with the same budget, measures accuracy, cost and memory, and
:func:`write_report` turns the result into ``report.md``, PNG figures and
``summary.json``. Every function returns plain data; progress goes to an
optional ``progress`` callback that takes one line of text.

Memory is measured as the peak number of bytes that autograd holds for the
backward pass during one training step (forward and backward): every tensor
saved for backward passes through :func:`torch.autograd.graph.saved_tensors_hooks`,
is counted once per storage while it is alive, and the maximum of the running
total is the peak. This is deterministic and independent of the allocator,
unlike the process's resident set size.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchnode.tasks.models import ODENet, SolverSettings, count_nfe, solver_overrides
from torchnode.tasks.registry import TaskData, get_task

__all__ = [
    "COMPARE_TASKS",
    "MODELS",
    "Budget",
    "SavedTensorMeter",
    "budget_for",
    "build_models",
    "evaluate",
    "machine_info",
    "measure_step_memory",
    "memory_sweep",
    "run_comparison",
    "solver_sweep",
    "train_model",
    "write_report",
]

COMPARE_TASKS = ("crossing", "circles", "digits")
MODELS = ("resnet", "node", "anode")
REGULARISED = "node+reg"
RESNET_BLOCKS = 4
MEMORY_DEPTHS = (4, 8, 16, 32, 64)
SWEEP_RTOLS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
SWEEP_EULER = (1, 2, 4, 8, 16)
REG_WEIGHT = 0.01

Progress = Callable[[str], None]


def _quiet(text: str) -> None:
    pass


@dataclass(frozen=True)
class Budget:
    """The training budget every model of a comparison gets."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    limit_batches: int = 0  # 0: every batch of the epoch
    memory_depths: tuple[int, ...] = MEMORY_DEPTHS
    memory_batch: int = 256


_DEFAULTS = {
    "crossing": Budget(epochs=150, batch_size=2, lr=1e-2),
    "circles": Budget(epochs=20, batch_size=64, lr=1e-2),
    # Digits: a few batches per epoch keep the four runs within minutes on CPU.
    "digits": Budget(
        epochs=2,
        batch_size=64,
        lr=1e-2,
        weight_decay=1e-4,
        limit_batches=6,
        memory_batch=16,
    ),
}
_QUICK = {
    "crossing": Budget(epochs=10, batch_size=2, lr=1e-2, memory_depths=(4, 16, 64)),
    "circles": Budget(
        epochs=2, batch_size=64, lr=1e-2, limit_batches=3, memory_depths=(4, 16, 64)
    ),
    "digits": Budget(
        epochs=1,
        batch_size=32,
        lr=1e-2,
        limit_batches=2,
        memory_depths=(4, 16),
        memory_batch=8,
    ),
}


def budget_for(task: str, *, quick: bool = False, epochs: int | None = None) -> Budget:
    """The default (or ``quick``) budget of ``task``, with ``epochs`` if given."""
    if task not in COMPARE_TASKS:
        raise ValueError(
            f"unknown task {task!r} for compare; valid: {', '.join(COMPARE_TASKS)}"
        )
    budget = (_QUICK if quick else _DEFAULTS)[task]
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        budget = Budget(**{**budget.__dict__, "epochs": epochs})
    return budget


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


class VectorFlow(nn.Module):
    """A flow on vectors (ResNet, neural ODE or augmented neural ODE), followed
    by a linear read-out, or by nothing when ``n_out`` is ``None`` (the output
    is then the flow's first ``dim`` coordinates)."""

    def __init__(
        self,
        kind: str,
        dim: int,
        n_out: int | None,
        *,
        hidden: int,
        solver: SolverSettings,
        augment: int = 1,
        n_blocks: int = RESNET_BLOCKS,
        regularizers: Sequence[str] = (),
    ) -> None:
        super().__init__()
        from torchnode.nn import AugmentedNeuralODE, MLPField, NeuralODE, ResNet

        self.kind, self.dim = kind, dim
        state = dim
        flow: nn.Module
        if kind == "node":
            flow = NeuralODE(
                MLPField(dim, hidden, 2, "relu", False),
                regularizers=regularizers,
                **solver.kwargs(),
            )
        elif kind == "anode":
            state = dim + augment
            flow = AugmentedNeuralODE(
                MLPField(state, hidden, 2, "relu", False),
                augment,
                return_augmented=True,
                regularizers=regularizers,
                **solver.kwargs(),
            )
        elif kind == "resnet":
            flow = ResNet(lambda: MLPField(dim, hidden, 2, "relu", False), n_blocks)
        else:
            raise ValueError(f"unknown model {kind!r}")
        self.flow = flow
        self.state_dim = state
        self.readout = None if n_out is None else nn.Linear(state, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.flow(x)
        if self.readout is None:
            return z[:, : self.dim]
        return self.readout(z)

    def trajectory(self, x: torch.Tensor, n_times: int = 41) -> torch.Tensor:
        """States ``[T, N, state]``: at ``n_times`` times for the ODE models, after
        each block (and the input) for the ResNet."""
        from torchnode import solve
        from torchnode.nn import ResNet

        with torch.no_grad():
            if isinstance(self.flow, ResNet):
                states = [x]
                h = self.flow.step_size
                for k, block in enumerate(self.flow.blocks):
                    t = torch.as_tensor(k * h, dtype=x.dtype)
                    states.append(states[-1] + h * block(t, states[-1]))
                return torch.stack(states)
            flow: Any = self.flow
            pad = self.state_dim - x.shape[1]
            z0 = torch.cat([x, x.new_zeros(x.shape[0], pad)], 1) if pad else x
            t0, t1 = (float(v) for v in flow.t_span)
            t = torch.linspace(t0, t1, n_times, dtype=x.dtype)
            ys: Any = solve(flow.field, z0, t, rtol=1e-6, atol=1e-7).ys
            return ys


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _mlp_params(dim: int, hidden: int) -> int:
    return (dim + 1) * hidden + (hidden + 1) * hidden + (hidden + 1) * dim


def _resnet_hidden(dim: int, target: int, blocks: int) -> int:
    """The hidden width whose ``blocks`` MLP blocks come closest to ``target``."""
    return min(range(1, 513), key=lambda h: abs(blocks * _mlp_params(dim, h) - target))


def _conv_params(width: int, hidden: int) -> int:
    convs = (width + 1) * hidden * 9 + hidden + (hidden + 1) * width * 9 + width
    return convs + 2 * width + 2 * hidden + 2 * width


def build_models(
    task: str, data: TaskData, seed: int, *, with_regularised: bool = True
) -> dict[str, nn.Module]:
    """The compared models of ``task``, each initialised from ``seed``.

    The neural ODEs use the task's solver settings. The ResNet has
    ``RESNET_BLOCKS`` blocks with separate weights, their hidden width chosen so
    that its parameter count comes closest to the neural ODE's.
    """
    spec = get_task(task)
    solver = spec.solver
    kinds: list[str] = list(MODELS) + ([REGULARISED] if with_regularised else [])
    models: dict[str, nn.Module] = {}
    for name in kinds:
        torch.manual_seed(seed)
        kind = "node" if name == REGULARISED else name
        regs = ("kinetic", "jacobian") if name == REGULARISED else ()
        if task in ("crossing", "circles"):
            dim = data.x_train.shape[1]
            n_out = None if task == "crossing" else 2
            hidden = 16 if task == "crossing" else 32
            if kind == "resnet":
                hidden = _resnet_hidden(dim, _mlp_params(dim, hidden), RESNET_BLOCKS)
            models[name] = VectorFlow(
                kind, dim, n_out, hidden=hidden, solver=solver, regularizers=regs
            )
        else:
            width = 32
            if kind == "resnet":
                from torchnode.nn import ConvField, ResNet

                net = ODENet("resnet", 1, 10, width=width, solver=solver, n_blocks=1)
                target = _conv_params(width, width)
                hidden = min(
                    range(1, 2 * width + 1),
                    key=lambda h: abs(RESNET_BLOCKS * _conv_params(width, h) - target),
                )
                torch.manual_seed(seed)
                net.block = ResNet(
                    [ConvField(width, hidden) for _ in range(RESNET_BLOCKS)]
                )
            else:
                net = ODENet(kind, 1, 10, width=width, solver=solver, augment=8)
                if regs:
                    net.block.regularizers = regs  # type: ignore[union-attr]
            models[name] = net
    return models


# ---------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------


def _kind(task: str) -> str:
    return get_task(task).kind


def _loss(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if kind == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out, y)


def _loss_on(kind: str, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda out: _loss(kind, out, y)


def _correct(kind: str, out: torch.Tensor, y: torch.Tensor) -> float:
    """Correct predictions: the class, or for regression the target's sign."""
    if kind == "classification":
        return float((out.argmax(1) == y).float().sum())
    return float((torch.sign(out) == torch.sign(y)).float().mean(dim=1).sum())


def _regularisation(model: nn.Module) -> torch.Tensor | None:
    total = None
    for block in model.modules():
        for value in getattr(block, "regularization", {}).values():
            total = value if total is None else total + value
    return total


def _resnet_blocks(model: nn.Module) -> int:
    from torchnode.nn import ResNet

    return sum(m.n_blocks for m in model.modules() if isinstance(m, ResNet))


def _nfe(model: nn.Module) -> tuple[int, int]:
    """Forward and backward field evaluations of the last step; a ResNet counts
    one evaluation per block forward and none backward (autograd replays it)."""
    nfe_f, nfe_b = count_nfe(model)
    return nfe_f + _resnet_blocks(model), nfe_b


def evaluate(
    task: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512
) -> dict[str, float]:
    """Accuracy, loss and forward NFE per batch of ``model`` on ``(x, y)``."""
    kind = _kind(task)
    model.eval()
    loss = correct = nfe = 0.0
    n_batches = 0
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch):
                xb, yb = x[start : start + batch], y[start : start + batch]
                out = model(xb)
                nfe += _nfe(model)[0]
                n_batches += 1
                loss += float(_loss(kind, out, yb)) * len(xb)
                correct += _correct(kind, out, yb)
    finally:
        model.train()
    return {
        "accuracy": correct / len(x),
        "loss": loss / len(x),
        "nfe_forward": nfe / max(1, n_batches),
    }


def train_model(
    task: str,
    model: nn.Module,
    data: TaskData,
    budget: Budget,
    seed: int,
    *,
    reg_weight: float = 0.0,
    name: str = "",
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Trains ``model`` with Adam for the budget; returns per-epoch rows and the
    wall time. Batches are drawn from ``seed`` alone, so every model sees the
    same batches in the same order."""
    kind = _kind(task)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay
    )
    gen = torch.Generator().manual_seed(seed)
    n = len(data.x_train)
    rows = []
    started = time.perf_counter()
    for epoch in range(1, budget.epochs + 1):
        order = torch.randperm(n, generator=gen)
        batches = list(order.split(budget.batch_size))
        if budget.limit_batches:
            batches = batches[: budget.limit_batches]
        t0 = time.perf_counter()
        loss_sum = correct = count = nfe_f = nfe_b = 0.0
        for idx in batches:
            x, y = data.x_train[idx], data.y_train[idx]
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss = _loss(kind, out, y)
            objective = loss
            reg = _regularisation(model)
            if reg_weight and reg is not None:
                objective = loss + reg_weight * reg
            f_evals = _nfe(model)[0]
            objective.backward()
            b_evals = _nfe(model)[1]
            optimizer.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += _correct(kind, out.detach(), y)
            count += len(idx)
            nfe_f += f_evals
            nfe_b += b_evals
        steps = max(1, len(batches))
        row = {
            "epoch": epoch,
            "loss": loss_sum / max(1.0, count),
            "train_accuracy": correct / max(1.0, count),
            "nfe_forward": nfe_f / steps,
            "nfe_backward": nfe_b / steps,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        if epoch == budget.epochs or epoch % max(1, budget.epochs // 5) == 0:
            progress(
                f"  {name or 'model'} epoch {epoch}/{budget.epochs} "
                f"loss {row['loss']:.4f} acc {row['train_accuracy']:.3f} "
                f"nfe {row['nfe_forward']:.1f}/{row['nfe_backward']:.1f}"
            )
    return {"rows": rows, "wall_time_s": time.perf_counter() - started}


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------


class _Held:
    __slots__ = ("key", "meter", "tensor")

    def __init__(self, tensor: torch.Tensor, key: Any, meter: SavedTensorMeter):
        self.tensor, self.key, self.meter = tensor, key, meter

    def __del__(self) -> None:
        self.meter._release(self.key)


class SavedTensorMeter:
    """Counts the bytes autograd holds for backward while the meter is active.

    Each saved tensor is counted once per underlying storage (views and
    repeated saves of one tensor share it) from when it is saved until autograd
    frees it. ``peak`` is the largest total seen.
    """

    def __init__(self) -> None:
        self.live: dict[Any, list[int]] = {}
        self.current = 0
        self.peak = 0

    def _pack(self, tensor: torch.Tensor) -> Any:
        storage = tensor.untyped_storage()
        key = (tensor.device, storage.data_ptr())
        entry = self.live.get(key)
        if entry is None:
            size = storage.nbytes()
            self.live[key] = [1, size]
            self.current += size
            self.peak = max(self.peak, self.current)
        else:
            entry[0] += 1
        return _Held(tensor, key, self)

    @staticmethod
    def _unpack(held: Any) -> torch.Tensor:
        return held.tensor

    def _release(self, key: Any) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self.live[key]

    @contextmanager
    def active(self) -> Iterator[SavedTensorMeter]:
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield self


def measure_step_memory(
    model: nn.Module, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]
) -> int:
    """Peak bytes held for backward during one forward and backward pass."""
    meter = SavedTensorMeter()
    model.zero_grad(set_to_none=True)
    with meter.active():
        loss = loss_fn(model(x))
        loss.backward()
        del loss
    model.zero_grad(set_to_none=True)
    return meter.peak


def _memory_input(task: str, data: TaskData, n: int) -> tuple[torch.Tensor, Any]:
    reps = math.ceil(n / len(data.x_train))
    x = data.x_train.repeat(reps, *([1] * (data.x_train.ndim - 1)))[:n]
    y = data.y_train.repeat(reps, *([1] * (data.y_train.ndim - 1)))[:n]
    return x, y


def memory_sweep(
    task: str,
    data: TaskData,
    seed: int,
    depths: Sequence[int] = MEMORY_DEPTHS,
    batch: int = 256,
    method: str = "rk4",
) -> list[dict[str, Any]]:
    """Peak saved bytes of one training step against depth.

    Three models: the ResNet with ``depth`` blocks, and the neural ODE solved
    with ``depth`` fixed ``method`` steps, differentiated directly (autograd
    through the solver) or with the adjoint.
    """
    from torchnode.nn import ResNet

    kind = _kind(task)
    x, y = _memory_input(task, data, batch)
    rows = []
    for depth in depths:
        models = build_models(task, data, seed, with_regularised=False)
        resnet = models["resnet"]
        for m in resnet.modules():
            if isinstance(m, ResNet):
                first = m.blocks[0]
                torch.manual_seed(seed)
                blocks = [_clone_init(first) for _ in range(depth)]
                new = ResNet(blocks)
                _replace(resnet, m, new)
                break
        row: dict[str, Any] = {"depth": depth}
        row["resnet"] = measure_step_memory(resnet, x, _loss_on(kind, y))
        node = models["node"]
        for gradient in ("direct", "adjoint"):
            opts = {"step_size": 1.0 / depth}
            with solver_overrides(node, method=method, options=opts, gradient=gradient):
                row[f"node_{gradient}"] = measure_step_memory(
                    node, x, _loss_on(kind, y)
                )
        rows.append(row)
    return rows


def _clone_init(block: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(block)
    reset = getattr(clone, "reset_parameters", None)
    if callable(reset):
        reset()
    return clone


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for name, child in root.named_children():
        if child is old:
            setattr(root, name, new)
            return
        _replace(child, old, new)


# ---------------------------------------------------------------------------
# Solver settings after training
# ---------------------------------------------------------------------------


def solver_sweep(
    task: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    rtols: Sequence[float] = SWEEP_RTOLS,
    euler_steps: Sequence[int] = SWEEP_EULER,
) -> list[dict[str, Any]]:
    """Test accuracy and forward NFE of a trained neural ODE as dopri5's
    tolerance is loosened (``atol = rtol / 10``) and with fixed Euler steps."""
    rows = []
    settings: list[tuple[str, float | None, int | None, dict[str, Any]]] = []
    for r in rtols:
        settings.append(
            ("dopri5", r, None, {"method": "dopri5", "rtol": r, "atol": r / 10})
        )
    for n in euler_steps:
        opts = {"step_size": 1.0 / n}
        settings.append(("euler", None, n, {"method": "euler", "options": opts}))
    for method, rtol, steps, overrides in settings:
        with solver_overrides(model, **overrides):
            result = evaluate(task, model, x, y)
        rows.append(
            {
                "method": method,
                "rtol": rtol,
                "steps": steps,
                "accuracy": result["accuracy"],
                "loss": result["loss"],
                "nfe_forward": result["nfe_forward"],
            }
        )
    return rows


# ---------------------------------------------------------------------------
# The whole comparison
# ---------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU model, core counts and the versions that produced the numbers."""
    import sys

    import torchnode

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchnode": torchnode.__version__,
    }


@dataclass
class Comparison:
    """Everything one comparison measured; ``summary`` is what goes to JSON."""

    summary: dict[str, Any]
    models: dict[str, nn.Module] = field(default_factory=dict)
    data: TaskData | None = None


def run_comparison(
    task: str = "crossing",
    *,
    seed: int = 0,
    budget: Budget | None = None,
    quick: bool = False,
    progress: Progress = _quiet,
) -> Comparison:
    """Trains ``resnet``, ``node``, ``anode`` and ``node+reg`` on ``task`` with
    the same budget and measures them; returns the models and the summary."""
    started = time.perf_counter()
    budget = budget or budget_for(task, quick=quick)
    spec = get_task(task)
    data = spec.load(seed)
    models = build_models(task, data, seed)
    progress(
        f"compare {task}: epochs {budget.epochs}, batch {budget.batch_size}, "
        f"lr {budget.lr:g}, seed {seed}"
    )
    results: dict[str, Any] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    kind = spec.kind
    for name, model in models.items():
        progress(f"training {name} ({_n_params(model)} parameters)")
        weight = REG_WEIGHT if name == REGULARISED else 0.0
        trained = train_model(
            task,
            model,
            data,
            budget,
            seed,
            reg_weight=weight,
            name=name,
            progress=progress,
        )
        test = evaluate(task, model, data.x_test, data.y_test)
        xb, yb = data.x_train[: budget.batch_size], data.y_train[: budget.batch_size]
        peak = measure_step_memory(model, xb, _loss_on(kind, yb))
        last = trained["rows"][-1]
        results[name] = {
            "accuracy": test["accuracy"],
            "loss": test["loss"],
            "params": _n_params(model),
            "nfe_forward": last["nfe_forward"],
            "nfe_backward": last["nfe_backward"],
            "test_nfe_forward": test["nfe_forward"],
            "peak_memory_mb": peak / 2**20,
            "wall_time_s": trained["wall_time_s"],
        }
        histories[name] = trained["rows"]
        progress(
            f"  {name}: test accuracy {test['accuracy']:.3f}, loss {test['loss']:.4f}"
        )

    progress("memory against depth")
    memory = memory_sweep(task, data, seed, budget.memory_depths, budget.memory_batch)
    progress("accuracy against solver cost")
    sweeps = {
        name: solver_sweep(task, models[name], data.x_test, data.y_test)
        for name in ("node", "anode", REGULARISED)
    }
    solver = spec.solver
    summary = {
        "task": task,
        "kind": kind,
        "seed": seed,
        "quick": quick,
        "budget": dict(budget.__dict__),
        "solver": {
            "method": solver.method,
            "rtol": solver.rtol,
            "atol": solver.atol,
            "gradient": solver.gradient,
        },
        "resnet_blocks": RESNET_BLOCKS,
        "reg_weight": REG_WEIGHT,
        "machine": machine_info(),
        "models": results,
        "history": histories,
        "memory": {"method": "saved_tensors_hooks", "unit": "bytes", "rows": memory},
        "solver_sweep": sweeps,
        "total_time_s": time.perf_counter() - started,
    }
    return Comparison(summary, models, data)


# ---------------------------------------------------------------------------
# Figures and report
# ---------------------------------------------------------------------------

_COLORS = {
    "resnet": "tab:green",
    "node": "tab:blue",
    "anode": "tab:orange",
    REGULARISED: "tab:purple",
}


def _plot_crossing(comp: Comparison, out: Path) -> list[Path]:
    from torchnode.tasks.plots import pyplot, save

    plt = pyplot()
    assert comp.data is not None
    x = comp.data.x_test
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    anode_traj = None
    for ax, name in zip(axes, MODELS):
        model: Any = comp.models[name]
        traj = model.trajectory(x).numpy()
        if name == "resnet":
            steps = range(traj.shape[0])
            for i, color in enumerate(("tab:blue", "tab:red")):
                ax.plot(
                    steps,
                    traj[:, i, 0],
                    "o-",
                    color=color,
                    label=f"x0 = {x[i, 0]:+.0f}",
                )
            ax.set(xlabel="depth (block)", ylabel="x")
        else:
            t = torch.linspace(0, 1, traj.shape[0]).numpy()
            for i, color in enumerate(("tab:blue", "tab:red")):
                ax.plot(t, traj[:, i, 0], color=color, label=f"x0 = {x[i, 0]:+.0f}")
            ax.set(xlabel="t", ylabel="x")
            if name == "anode":
                anode_traj = traj
        acc = comp.summary["models"][name]["accuracy"]
        ax.axhline(0, color="0.8", lw=0.8)
        ax.set_title(f"{name}: accuracy {acc:.2f}")
        ax.legend(fontsize=8)
    ax = axes[3]
    if anode_traj is not None:
        for i, color in enumerate(("tab:blue", "tab:red")):
            ax.plot(anode_traj[:, i, 0], anode_traj[:, i, 1], color=color)
            ax.plot(anode_traj[0, i, 0], anode_traj[0, i, 1], "o", color=color)
            ax.plot(anode_traj[-1, i, 0], anode_traj[-1, i, 1], "s", color=color)
        ax.set(xlabel="x", ylabel="augmented", title="anode: path in (x, augmented)")
    return [save(fig, out / "trajectories.png")]


def _plot_circles(comp: Comparison, out: Path) -> list[Path]:
    from torchnode.tasks.plots import pyplot, save

    plt = pyplot()
    assert comp.data is not None
    x, labels = comp.data.x_test[:200], comp.data.y_test[:200].numpy()
    colors = ["tab:blue" if v == 0 else "tab:red" for v in labels]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for ax, name in zip(axes, MODELS):
        model: Any = comp.models[name]
        traj = model.trajectory(x).numpy()
        for i in range(traj.shape[1]):
            ax.plot(traj[:, i, 0], traj[:, i, 1], color=colors[i], lw=0.3, alpha=0.5)
        ax.scatter(traj[-1, :, 0], traj[-1, :, 1], c=colors, s=6)
        acc = comp.summary["models"][name]["accuracy"]
        ax.set(xlabel="x1", ylabel="x2", title=f"{name}: t=0 to 1, accuracy {acc:.2f}")
        if name == "anode":
            axes[3].scatter(traj[-1, :, 0], traj[-1, :, 2], c=colors, s=6)
            axes[3].set(
                xlabel="x1", ylabel="augmented", title="anode: final (x1, augmented)"
            )
    return [save(fig, out / "flows.png")]


def _plot_memory(summary: dict[str, Any], out: Path) -> Path:
    from torchnode.tasks.plots import pyplot, save

    plt = pyplot()
    rows = summary["memory"]["rows"]
    depths = [r["depth"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (
        ("resnet", "ResNet (blocks)"),
        ("node_direct", "NODE, direct backprop (rk4 steps)"),
        ("node_adjoint", "NODE, adjoint (rk4 steps)"),
    ):
        ax.plot(depths, [r[key] / 2**20 for r in rows], "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(
        xlabel="depth (blocks or solver steps)",
        ylabel="peak MiB saved for backward",
        title="memory of one training step",
    )
    ax.legend(fontsize=8)
    return save(fig, out / "memory.png")


def _plot_sweep(summary: dict[str, Any], out: Path) -> Path:
    from torchnode.tasks.plots import pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in summary["solver_sweep"].items():
        for method, marker in (("dopri5", "o-"), ("euler", "s--")):
            pts = sorted(
                (r["nfe_forward"], r["accuracy"]) for r in rows if r["method"] == method
            )
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker,
                color=_COLORS[name],
                label=f"{name} {method}",
            )
    ax.set_xscale("log")
    ax.set(
        xlabel="function evaluations per test batch",
        ylabel="test accuracy",
        title="accuracy against cost",
    )
    ax.legend(fontsize=7)
    return save(fig, out / "accuracy_vs_nfe.png")


def _plot_nfe(summary: dict[str, Any], out: Path) -> Path:
    from torchnode.tasks.plots import pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("node", REGULARISED, "anode"):
        rows = summary["history"][name]
        ax.plot(
            [r["epoch"] for r in rows],
            [r["nfe_forward"] for r in rows],
            "-",
            color=_COLORS[name],
            label=f"{name} forward",
        )
        ax.plot(
            [r["epoch"] for r in rows],
            [r["nfe_backward"] for r in rows],
            ":",
            color=_COLORS[name],
            label=f"{name} backward",
        )
    ax.set(
        xlabel="epoch", ylabel="evaluations per training step", title="NFE in training"
    )
    ax.legend(fontsize=8)
    return save(fig, out / "nfe_training.png")


def _fmt_bytes(n: float) -> str:
    return f"{n / 1024:.1f}"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / max(1, len(values))


def _report_text(summary: dict[str, Any], figures: dict[str, str]) -> str:
    m = summary["models"]
    mach = summary["machine"]
    b = summary["budget"]
    s = summary["solver"]
    task = summary["task"]
    lines = [
        f"# ResNet, neural ODE and augmented neural ODE on `{task}`",
        "",
        "All numbers below were measured in this run.",
        "",
        f"- machine: {mach['cpu']}, {mach['cores']} cores "
        f"({mach['usable_cores']} usable, torch threads {mach['torch_threads']}), "
        f"{mach['platform']}",
        f"- versions: python {mach['python']}, torch {mach['torch']}, "
        f"torchnode {mach['torchnode']}",
        f"- seed: {summary['seed']}" + (" (quick budget)" if summary["quick"] else ""),
        f"- budget (every model): {b['epochs']} epochs, batch size {b['batch_size']}, "
        f"Adam lr {b['lr']:g}, weight decay {b['weight_decay']:g}"
        + (f", {b['limit_batches']} batches per epoch" if b["limit_batches"] else ""),
        f"- neural ODEs: {s['method']} rtol {s['rtol']:g} atol {s['atol']:g}, "
        f"{s['gradient']} gradients; ResNet: {summary['resnet_blocks']} blocks "
        "with separate weights, width chosen to match the NODE's parameter count",
        f"- `{REGULARISED}`: the NODE trained with kinetic + Jacobian regularisers, "
        f"weight {summary['reg_weight']:g} each",
        f"- total time: {summary['total_time_s']:.1f} s",
        "",
        "## Results",
        "",
        "| model | accuracy | loss | params | NFE fwd | NFE bwd | peak MiB | "
        "train time s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in m.items():
        lines.append(
            f"| {name} | {r['accuracy']:.3f} | {r['loss']:.4f} | {r['params']} | "
            f"{r['nfe_forward']:.1f} | {r['nfe_backward']:.1f} | "
            f"{r['peak_memory_mb']:.4f} | {r['wall_time_s']:.2f} |"
        )
    lines += [
        "",
        "Accuracy and loss are on the test set"
        + (
            " (accuracy: the fraction of inputs whose output has the target's sign; "
            "loss: mean squared error)"
            if summary["kind"] == "regression"
            else " (loss: cross entropy)"
        )
        + ". NFE: field evaluations per training step in the last epoch (the "
        "ResNet counts one per block forward; its backward pass replays the "
        "stored graph, as the NODE's does with direct gradients). Peak MiB: the "
        "peak of bytes saved for backward during one training step (see Memory).",
        "",
        "## 1. Trajectories",
        "",
    ]
    if task == "crossing":
        node, anode, resnet = m["node"], m["anode"], m["resnet"]
        verdict_node = (
            "does not fit the map, as trajectories of a 1-D ODE cannot cross"
            if node["accuracy"] <= 0.5
            else "fitted more than half the inputs, which a 1-D flow should not"
        )
        verdict_anode = (
            "fits it by routing the paths around each other through the extra dimension"
            if anode["accuracy"] == 1.0
            else "has not fitted it within this budget"
        )
        verdict_resnet = (
            "fits it with discrete jumps, which may cross"
            if resnet["accuracy"] == 1.0
            else "has not fitted it within this budget"
        )
        lines += [
            "In 1-D the inputs -1 and 1 must map to 1 and -1. "
            f"The NODE {verdict_node}: accuracy {node['accuracy']:.3f}, loss "
            f"{node['loss']:.4f} (the best order-preserving map gives loss 1). "
            f"The ANODE (accuracy {anode['accuracy']:.3f}, loss "
            f"{anode['loss']:.4f}) {verdict_anode}; the ResNet (accuracy "
            f"{resnet['accuracy']:.3f}, loss {resnet['loss']:.4f}) {verdict_resnet}. "
            "Left three panels: the state against time (ODEs) or block (ResNet); "
            "right: the ANODE's path in (x, augmented).",
            "",
        ]
    if "trajectories" in figures:
        lines += [f"![trajectories]({figures['trajectories']})", ""]
    elif "flows" in figures:
        lines += [
            "Test points coloured by class, moving from t=0 (input) to t=1; the "
            "ResNet's points after each block. The last panel is the ANODE's final "
            "state in (x1, augmented).",
            "",
            f"![flows]({figures['flows']})",
            "",
        ]
    else:
        lines += ["(No trajectory picture for image tasks.)", ""]

    mem = summary["memory"]["rows"]
    first, last = mem[0], mem[-1]

    def ratio(key: str) -> float:
        return last[key] / max(1, first[key])

    lines += [
        "## 2. Memory against depth",
        "",
        "Method: the bytes autograd holds for the backward pass, counted with "
        "`torch.autograd.graph.saved_tensors_hooks` during one training step "
        "(forward and backward) of a batch of "
        f"{summary['budget']['memory_batch']} inputs. Each saved tensor counts "
        "once per storage while it is alive; the table gives the peak. This is "
        "deterministic; the process's RSS is not measured. Depth: ResNet blocks, "
        "or fixed rk4 steps over [0, 1] for the NODE.",
        "",
        "| depth | ResNet KiB | NODE direct KiB | NODE adjoint KiB |",
        "|---|---|---|---|",
    ]
    for r in mem:
        lines.append(
            f"| {r['depth']} | {_fmt_bytes(r['resnet'])} | "
            f"{_fmt_bytes(r['node_direct'])} | {_fmt_bytes(r['node_adjoint'])} |"
        )
    lines += [
        "",
        f"From depth {first['depth']} to {last['depth']} the ResNet's peak grows "
        f"{ratio('resnet'):.2f}x, direct backprop's {ratio('node_direct'):.2f}x "
        f"and the adjoint's {ratio('node_adjoint'):.2f}x.",
        "",
        f"![memory]({figures['memory']})",
        "",
        "## 3. Accuracy against solver cost",
        "",
        "The trained ODE models re-evaluated on the test set with dopri5 at looser "
        "and tighter tolerances (atol = rtol / 10), and with fixed Euler steps.",
        "",
        "| model | method | rtol | steps | accuracy | NFE |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in summary["solver_sweep"].items():
        for r in rows:
            rtol = "-" if r["rtol"] is None else f"{r['rtol']:g}"
            steps = "-" if r["steps"] is None else str(r["steps"])
            lines.append(
                f"| {name} | {r['method']} | {rtol} | {steps} | "
                f"{r['accuracy']:.3f} | {r['nfe_forward']:.1f} |"
            )
    hist = summary["history"]
    node_nfe = [r["nfe_forward"] for r in hist["node"]]
    reg_nfe = [r["nfe_forward"] for r in hist[REGULARISED]]
    growth_node = node_nfe[-1] - node_nfe[0]
    growth_reg = reg_nfe[-1] - reg_nfe[0]
    compare_word = "less than" if growth_reg < growth_node else "not less than"
    lines += [
        "",
        f"![accuracy against cost]({figures['sweep']})",
        "",
        "## 4. NFE during training",
        "",
        "Forward evaluations per training step, averaged over each epoch.",
        "",
        "| epoch | node | node+reg | anode |",
        "|---|---|---|---|",
    ]
    for a, c, d in zip(hist["node"], hist[REGULARISED], hist["anode"]):
        lines.append(
            f"| {a['epoch']} | {a['nfe_forward']:.1f} | {c['nfe_forward']:.1f} | "
            f"{d['nfe_forward']:.1f} |"
        )
    lines += [
        "",
        f"From the first to the last epoch the NODE's forward NFE went "
        f"{node_nfe[0]:.1f} -> {node_nfe[-1]:.1f} (change {growth_node:+.1f}) and "
        f"the regularised NODE's {reg_nfe[0]:.1f} -> {reg_nfe[-1]:.1f} (change "
        f"{growth_reg:+.1f}): with the regularisers it grew {compare_word} without "
        f"(mean over epochs {_mean(node_nfe):.1f} vs {_mean(reg_nfe):.1f}).",
        "",
        f"![NFE in training]({figures['nfe']})",
        "",
    ]
    return "\n".join(lines)


def write_report(comp: Comparison, out: str | Path) -> list[Path]:
    """Writes ``report.md``, the PNG figures and ``summary.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = comp.summary
    task = summary["task"]
    figures: dict[str, str] = {}
    paths: list[Path] = []
    if comp.models and comp.data is not None:
        if task == "crossing":
            paths += _plot_crossing(comp, out)
            figures["trajectories"] = "trajectories.png"
        elif task == "circles":
            paths += _plot_circles(comp, out)
            figures["flows"] = "flows.png"
    for key, fn in (
        ("memory", _plot_memory),
        ("sweep", _plot_sweep),
        ("nfe", _plot_nfe),
    ):
        path = fn(summary, out)
        figures[key] = path.name
        paths.append(path)
    report = out / "report.md"
    report.write_text(_report_text(summary, figures) + "\n", encoding="utf-8")
    data = out / "summary.json"
    data.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return [report, data, *paths]
