"""Interleaved timing of one case across libraries, with call counting."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from benchmarks.adapters import Adapter, Spec
from benchmarks.fields import CountingField
from benchmarks.results import Row
from benchmarks.stats import rotated


@dataclass
class Outcome:
    """What one run produced: the solution, call counts and parameter gradients."""

    ys: Tensor
    nfe_forward: int
    nfe_backward: int | None = None
    grads: list[Tensor] = field(default_factory=list)


Run = Callable[[], Outcome]
Loss = Callable[[Tensor], Tensor]


def sum_of_squares(ys: Tensor) -> Tensor:
    return (ys[-1] ** 2).sum()


def make_run(
    adapter: Adapter,
    field_: CountingField,
    y0: Tensor,
    t: Tensor,
    spec: Spec,
    loss: Loss = sum_of_squares,
) -> Run:
    """A callable doing one forward (``spec.mode == "forward"``, no autograd
    graph) or one forward+backward of ``loss`` in the given gradient mode."""
    solve = adapter.prepare(field_, spec)
    params = [p for p in field_.parameters() if p.requires_grad]

    def run() -> Outcome:
        field_.calls = 0
        if spec.mode == "forward":
            with torch.no_grad():
                return Outcome(solve(y0, t), field_.calls)
        for p in params:
            p.grad = None
        ys = solve(y0, t)
        nfe_forward = field_.calls
        loss(ys).backward()
        grads = [p.grad.detach().clone() for p in params if p.grad is not None]
        return Outcome(ys.detach(), nfe_forward, field_.calls - nfe_forward, grads)

    return run


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text[:120]


def time_interleaved(
    runs: dict[str, Run], reps: int, warmup: int = 1, device: str = "cpu"
) -> tuple[dict[str, list[float]], dict[str, Outcome], dict[str, str]]:
    """Time each run ``reps`` times; every repetition runs every library once, in
    an order rotated per repetition. Returns times, last outcomes and errors."""
    errors: dict[str, str] = {}
    last: dict[str, Outcome] = {}
    for _ in range(warmup):
        for name in [n for n in runs if n not in errors]:
            _attempt(runs, name, last, errors)
    times: dict[str, list[float]] = {n: [] for n in runs if n not in errors}
    for rep in range(reps):
        for name in rotated([n for n in times if n not in errors], rep):
            _sync(device)
            start = time.perf_counter()
            if _attempt(runs, name, last, errors):
                _sync(device)
                times[name].append(time.perf_counter() - start)
    return {n: v for n, v in times.items() if n not in errors}, last, errors


def _attempt(runs, name, last, errors) -> bool:
    try:
        last[name] = runs[name]()
    except Exception as exc:
        errors[name] = _short(exc)
        return False
    return True


def _failing(message: str) -> Run:
    def run() -> Outcome:
        raise RuntimeError(message)

    return run


def run_case(
    workload: str,
    case: str,
    adapters: Sequence[Adapter],
    build: Callable[[Adapter], Run],
    spec: Spec,
    reps: int,
    warmup: int = 1,
    device: str = "cpu",
    skips: set[tuple[str, str]] | None = None,
) -> tuple[list[Row], dict[str, Outcome]]:
    """Rows (one per library supporting ``spec``) and the last outcome of each."""
    runs: dict[str, Run] = {}
    for adapter in adapters:
        reason = adapter.unsupported(spec)
        if reason is not None:
            if skips is not None:
                skips.add((reason, adapter.name))
            continue
        try:
            runs[adapter.name] = build(adapter)
        except Exception as exc:
            runs[adapter.name] = _failing(_short(exc))
    times, last, errors = time_interleaved(runs, reps, warmup, device)
    rows = []
    for name in runs:
        row = Row(workload, case, name, spec.mode, times.get(name, []))
        row.error = errors.get(name)
        row.summarize()
        if name in last and row.error is None:
            row.nfe_forward = last[name].nfe_forward
            row.nfe_backward = last[name].nfe_backward
        rows.append(row)
    return rows, last
