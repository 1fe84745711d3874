"""The training loop: Adam with cosine learning-rate decay, per-epoch metrics,
run folders, resume, DDP."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchnode import SolverError
from torchnode.tasks.models import SolverSettings, count_nfe
from torchnode.tasks.registry import Task, TaskData, get_task

from .config import ConfigError, TrainConfig, dump_toml
from .distributed import Dist

__all__ = [
    "METRIC_COLUMNS",
    "Reporter",
    "RunError",
    "evaluate_model",
    "load_run",
    "resolve",
    "train",
]

METRIC_COLUMNS = (
    "epoch",
    "loss",
    "train_metric",
    "test_metric",
    "nfe_forward",
    "nfe_backward",
    "seconds",
    "peak_memory_mb",
)


class RunError(RuntimeError):
    """A run that cannot start or continue; the message says why."""


class Reporter(Protocol):
    """What the loop tells the caller. Every method may do nothing."""

    def epoch_start(self, epoch: int, epochs: int, n_batches: int) -> None: ...

    def batch_end(self, loss: float, metric: float, nfe_f: int, nfe_b: int) -> None: ...

    def epoch_end(self, row: dict[str, Any]) -> None: ...

    def message(self, text: str) -> None: ...


class _Silent:
    def epoch_start(self, epoch: int, epochs: int, n_batches: int) -> None:
        pass

    def batch_end(self, loss: float, metric: float, nfe_f: int, nfe_b: int) -> None:
        pass

    def epoch_end(self, row: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass


def resolve(config: TrainConfig) -> tuple[TrainConfig, Task]:
    """Fills the task's defaults into the unset fields and checks the result."""
    try:
        task = get_task(config.task)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
    defaults = {
        "model": task.default_model,
        "method": task.solver.method,
        "rtol": task.solver.rtol,
        "atol": task.solver.atol,
        "gradient": task.solver.gradient,
        "epochs": task.epochs,
        "batch_size": task.batch_size,
        "lr": task.lr,
        "lr_schedule": task.lr_schedule,
        "weight_decay": task.weight_decay,
    }
    values = config.as_dict()
    unset = TrainConfig().as_dict()
    for key, default in defaults.items():
        if values[key] == unset[key]:
            values[key] = default
    resolved = TrainConfig(**values)
    resolved.validate(task.models)
    return resolved, task


def _solver(config: TrainConfig) -> SolverSettings:
    return SolverSettings(config.method, config.rtol, config.atol, config.gradient)


def _dtype(config: TrainConfig) -> torch.dtype:
    return torch.float64 if config.dtype == "float64" else torch.float32


def _prepare_data(task: Task, config: TrainConfig, device: torch.device) -> TaskData:
    data = task.load(config.seed)
    dtype = _dtype(config)

    def move(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device)
        return t.to(dtype) if t.is_floating_point() else t

    data.x_train, data.y_train = move(data.x_train), move(data.y_train)
    data.x_test, data.y_test = move(data.x_test), move(data.y_test)
    return data


def build_model(task: Task, config: TrainConfig, data: TaskData) -> nn.Module:
    torch.manual_seed(config.seed)
    model = task.build(config.model, data, _solver(config))
    return model.to(_dtype(config))


def _loss(task: Task, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task.kind == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out, y)


def _batch_metric(task: Task, out: torch.Tensor, y: torch.Tensor) -> float:
    if task.kind == "classification":
        return float((out.argmax(1) == y).float().sum())
    return float(F.mse_loss(out, y, reduction="sum")) / max(1, y[0].numel())


def evaluate_model(
    task: Task,
    model: nn.Module,
    data: TaskData,
    batch_size: int = 512,
    dist: Dist | None = None,
) -> dict[str, Any]:
    """Test metrics of ``model``: the task's metric plus NFE per batch.

    With ``dist`` of world size > 1 each rank evaluates its own contiguous
    share of the test set and the sums are all-reduced, so every rank returns
    the same metric; no ``predictions`` are returned then. ``model`` must be
    the bare module, not its DistributedDataParallel wrapper, whose forward
    would synchronise the ranks' (unequal) batch counts.
    """
    model.eval()
    try:
        if task.evaluate is not None:
            scores = task.evaluate(model, data)
            nfe = count_nfe(model)[0]
            return {**scores, "metric": scores["mse"], "nfe_forward": nfe}
        n_test = len(data.x_test)
        lo, hi = 0, n_test
        shard = dist if dist is not None and dist.world_size > 1 else None
        if shard is not None:
            lo = n_test * shard.rank // shard.world_size
            hi = n_test * (shard.rank + 1) // shard.world_size
        total, nfe_total, n_batches = 0.0, 0.0, 0.0
        preds = []
        with torch.no_grad():
            for start in range(lo, hi, batch_size):
                x = data.x_test[start : min(start + batch_size, hi)]
                y = data.y_test[start : min(start + batch_size, hi)]
                out = model(x)
                nfe_total += count_nfe(model)[0]
                n_batches += 1
                total += _batch_metric(task, out, y)
                if task.kind == "classification" and shard is None:
                    preds.append(out.argmax(1))
        if shard is not None:
            total, nfe_total, n_batches = shard.all_reduce_sum(
                [total, nfe_total, n_batches]
            )
        metric = total / n_test
        result: dict[str, Any] = {
            "metric": metric,
            task.metric: metric,
            "nfe_forward": nfe_total / max(1, n_batches),
        }
        if preds:
            result["predictions"] = torch.cat(preds).cpu()
        return result
    finally:
        model.train()


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode("utf-8"))


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in METRIC_COLUMNS})
    _atomic_write_text(path, buf.getvalue())


@dataclass
class _State:
    """Where training stands: completed epochs, batches into the next one."""

    epoch: int = 0
    batch: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    partial: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0


def _rng_states() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def _save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: _State,
    config: TrainConfig,
) -> None:
    payload = {
        "format": "torchnode-checkpoint-1",
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": state.epoch,
        "batch": state.batch,
        "partial": dict(state.partial),
        "rows": state.rows,
        "elapsed": state.elapsed,
        "rng": _rng_states(),
        "config": config.as_dict(),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    _atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The checkpoint of a run folder; a clear :class:`RunError` otherwise."""
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise RunError(f"no checkpoint in {run_dir} (expected {path.name})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise RunError(f"checkpoint {path} is corrupt or unreadable: {exc}") from None
    needed = {"model", "optimizer", "epoch", "config", "rng"}
    if not isinstance(payload, dict) or not needed <= set(payload):
        raise RunError(f"checkpoint {path} is not a torchnode checkpoint")
    return payload


def load_run(run_dir: Path) -> tuple[TrainConfig, Task, nn.Module, TaskData]:
    """Rebuilds a run's model with its trained weights, and the task data."""
    payload = load_checkpoint(run_dir)
    try:
        config = TrainConfig().updated(payload["config"])
    except ConfigError as exc:
        raise RunError(
            f"checkpoint in {run_dir} holds a bad configuration: {exc}"
        ) from None
    config, task = resolve(config)
    data = _prepare_data(task, config, torch.device("cpu"))
    model = build_model(task, config, data)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise RunError(
            f"checkpoint in {run_dir} does not fit its model: {exc}"
        ) from None
    return config, task, model, data


def _set_lr(
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    epoch: int,
    batch: int,
    n_batches: int,
) -> None:
    """Cosine decay of the learning rate from ``lr`` to 0 over the run.

    A function of the position in the run alone, so a resumed run follows the
    same schedule with no scheduler state to save.
    """
    progress = (epoch * n_batches + batch) / max(config.epochs * n_batches, 1)
    lr = 0.5 * config.lr * (1.0 + math.cos(math.pi * progress))
    for group in optimizer.param_groups:
        group["lr"] = lr


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunError(
            f"cannot write to output folder {run_dir}: {exc.strerror or exc}"
        ) from None


def _batches(n: int, config: TrainConfig, epoch: int, dist: Dist) -> list[torch.Tensor]:
    """This rank's index batches for ``epoch``, from ``seed + epoch`` alone."""
    from torch.utils.data import DistributedSampler

    sampler: DistributedSampler[int] = DistributedSampler(
        range(n),  # type: ignore[arg-type]
        num_replicas=dist.world_size,
        rank=dist.rank,
        shuffle=True,
        seed=config.seed,
    )
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), dtype=torch.long)
    local = max(1, config.batch_size // dist.world_size)
    batches = list(order.split(local))
    if config.limit_batches:
        batches = batches[: config.limit_batches]
    return batches


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Trains ``config`` into ``run_dir``; returns the summary.

    With ``resume`` the run continues from ``run_dir/checkpoint.pt`` (the
    configuration's epochs may be raised). Only rank 0 writes files.

    Raises:
        ConfigError: bad settings.
        RunError: a run that cannot start, or a solver failure (the last good
            checkpoint is kept).
        KeyboardInterrupt: after writing a checkpoint of the current position.
    """
    report: Reporter = reporter if reporter is not None else _Silent()
    run_dir = Path(run_dir)
    config, task = resolve(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    dist = Dist.from_env(config.device)
    try:
        return _train(config, task, run_dir, resume, report, dist)
    finally:
        dist.close()


def _train(
    config: TrainConfig,
    task: Task,
    run_dir: Path,
    resume: bool,
    report: Reporter,
    dist: Dist,
) -> dict[str, Any]:
    device = dist.device
    payload = load_checkpoint(run_dir) if resume else None
    if dist.is_main:
        _check_writable(run_dir)
    data = _prepare_data(task, config, device)
    model = build_model(task, config, data).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    state = _State()
    if payload is not None:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        _set_rng_states(payload["rng"])
        state = _State(
            epoch=int(payload["epoch"]),
            batch=int(payload.get("batch", 0)),
            rows=list(payload.get("rows", [])),
            partial=dict(payload.get("partial", {})),
            elapsed=float(payload.get("elapsed", 0.0)),
        )
    else:
        random.seed(config.seed)
        np.random.seed(config.seed)
    net = dist.wrap(model)
    params = sum(p.numel() for p in model.parameters())
    ckpt = run_dir / "checkpoint.pt"

    if dist.is_main:
        header = f"torchnode {task.name} run; resolved settings ({params} parameters)"
        _atomic_write_text(run_dir / "config.toml", dump_toml(config.as_dict(), header))
        _write_metrics(run_dir / "metrics.csv", state.rows)
        if payload is None:
            _save_checkpoint(ckpt, model, optimizer, state, config)
        report.message(
            f"{task.name}/{config.model}: {params} parameters, {config.method} "
            f"rtol={config.rtol:g} atol={config.atol:g} gradient={config.gradient}, "
            f"world size {dist.world_size}, output {run_dir}"
        )

    n_train = len(data.x_train)
    started = time.perf_counter() - state.elapsed
    epoch = state.epoch
    batch_index = 0
    try:
        for epoch in range(state.epoch, config.epochs):
            batches = _batches(n_train, config, epoch, dist)
            report.epoch_start(epoch + 1, config.epochs, len(batches))
            acc = state.partial or {
                "loss": 0.0,
                "metric": 0.0,
                "count": 0.0,
                "nfe_f": 0.0,
                "nfe_b": 0.0,
                "steps": 0.0,
                "seconds": 0.0,
            }
            first = state.batch
            state.partial, state.batch = {}, 0
            epoch_start = time.perf_counter() - acc["seconds"]
            for batch_index in range(first, len(batches)):
                idx = batches[batch_index].to(device)
                x, y = data.x_train[idx], data.y_train[idx]
                optimizer.zero_grad(set_to_none=True)
                out = net(x)
                nfe_f = count_nfe(model)[0]
                loss = _loss(task, out, y)
                loss.backward()
                nfe_b = count_nfe(model)[1]
                if config.lr_schedule == "cosine":
                    _set_lr(optimizer, config, epoch, batch_index, len(batches))
                optimizer.step()
                acc["loss"] += float(loss.detach()) * len(idx)
                acc["metric"] += _batch_metric(task, out.detach(), y)
                acc["count"] += len(idx)
                acc["nfe_f"] += nfe_f
                acc["nfe_b"] += nfe_b
                acc["steps"] += 1
                report.batch_end(
                    float(loss.detach()), _running(task, acc), nfe_f, nfe_b
                )
                state.partial = dict(acc)
                state.partial["seconds"] = time.perf_counter() - epoch_start
                state.batch = batch_index + 1
            total = dist.all_reduce_sum(
                [acc["loss"], acc["metric"], acc["count"], acc["nfe_f"], acc["nfe_b"]]
            )
            steps = acc["steps"] * dist.world_size
            test = evaluate_model(task, model, data, dist=dist)
            seconds = time.perf_counter() - epoch_start
            row = {
                "epoch": epoch + 1,
                "loss": total[0] / total[2],
                "train_metric": total[1] / total[2],
                "test_metric": test["metric"],
                "nfe_forward": round(total[3] / steps, 2),
                "nfe_backward": round(total[4] / steps, 2),
                "seconds": round(seconds, 3),
                "peak_memory_mb": round(_peak_memory_mb(device), 1),
            }
            state.rows.append(row)
            state.epoch, state.batch, state.partial = epoch + 1, 0, {}
            state.elapsed = time.perf_counter() - started
            if dist.is_main:
                _write_metrics(run_dir / "metrics.csv", state.rows)
                _save_checkpoint(ckpt, model, optimizer, state, config)
            report.epoch_end({**row, "epochs": config.epochs, "metric": task.metric})
    except KeyboardInterrupt:
        if dist.is_main:
            state.elapsed = time.perf_counter() - started
            _save_checkpoint(ckpt, model, optimizer, state, config)
            report.message(
                f"interrupted in epoch {epoch + 1}, batch {state.batch}; checkpoint "
                f"written to {ckpt}; continue with --resume {run_dir}"
            )
        raise
    except SolverError as exc:
        raise RunError(
            f"solver failed in epoch {epoch + 1}, batch {batch_index + 1}: {exc}; "
            f"the last good checkpoint (epoch {state.epoch}) is kept in {ckpt}"
        ) from None

    wall = time.perf_counter() - started
    final = evaluate_model(task, model, data)
    last = state.rows[-1] if state.rows else {"nfe_forward": 0, "nfe_backward": 0}
    summary: dict[str, Any] = {
        "task": task.name,
        "model": config.model,
        f"test_{task.metric}": final["metric"],
    }
    for key, value in final.items():
        if key.endswith("_mse") and key != "test_mse":
            summary[key] = value
    summary.update(
        {
            "params": params,
            "nfe_forward": last["nfe_forward"],
            "nfe_backward": last["nfe_backward"],
            "epochs": state.epoch,
            "wall_time_s": round(wall, 2),
            "world_size": dist.world_size,
        }
    )
    if dist.is_main:
        _atomic_write_text(
            run_dir / "summary.json", json.dumps(summary, indent=2) + "\n"
        )
        from .figures import write_figures

        write_figures(task, model.cpu(), data, state.rows, final, run_dir)
    return summary


def _running(task: Task, acc: dict[str, float]) -> float:
    return acc["metric"] / max(1.0, acc["count"])
