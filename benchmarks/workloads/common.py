"""Shared context and helpers for the workloads."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from benchmarks.adapters import Adapter, Spec
from benchmarks.fields import CountingField
from benchmarks.results import Row
from benchmarks.runner import Outcome, make_run, run_case


@dataclass
class Context:
    """Settings shared by all workloads of one harness run."""

    adapters: list[Adapter]
    quick: bool = False
    reps: int = 5
    warmup: int = 1
    device: str = "cpu"
    skips: set[tuple[str, str]] = field(default_factory=set)

    def only(self, names: Sequence[str]) -> list[Adapter]:
        return [a for a in self.adapters if a.name in names]

    def case(
        self,
        workload: str,
        case: str,
        field_: CountingField,
        y0: Tensor,
        t: Tensor,
        spec: Spec,
        adapters: Sequence[Adapter] | None = None,
    ) -> tuple[list[Row], dict[str, Outcome]]:
        """Time ``spec`` for every (given) library on one problem."""

        def build(adapter: Adapter):
            return make_run(adapter, field_, y0, t, spec)

        chosen = self.adapters if adapters is None else adapters
        return run_case(
            workload,
            case,
            chosen,
            build,
            spec,
            self.reps,
            self.warmup,
            self.device,
            self.skips,
        )


def time_field_call(
    field_: CountingField, y0: Tensor, t: Tensor, device: str, min_time: float = 0.2
) -> float:
    """Seconds of one field evaluation (no autograd graph): the fastest of nine
    timed batches of calls, so that a busy machine inflates it least."""
    samples = []
    with torch.no_grad():
        field_(t[0], y0)
        batch = 10
        for _ in range(9):
            start = time.perf_counter()
            for _ in range(batch):
                field_(t[0], y0)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            samples.append(elapsed / batch)
            if elapsed < min_time / 9:
                batch *= 2
    return min(samples)


def flat(grads: Sequence[Tensor]) -> Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def rel_error(grads: Sequence[Tensor], reference: Sequence[Tensor]) -> float:
    a, b = flat(grads), flat(reference)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def attach(rows: Sequence[Row], metric: Callable[[Row], dict]) -> None:
    """Add metrics to every row that ran."""
    for row in rows:
        if row.error is None:
            row.metrics.update(metric(row))
