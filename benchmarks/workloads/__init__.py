"""Registry of workloads: name -> (title, run function)."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.results import WorkloadResult
from benchmarks.workloads import w1, w2, w2_hard, w3, w4, w5, w7
from benchmarks.workloads.common import Context

Workload = Callable[[Context], WorkloadResult]

WORKLOADS: dict[str, tuple[str, Workload]] = {
    "W1": (w1.TITLE, w1.run),
    "W2": (w2.TITLE, w2.run),
    "W2-HARD": (w2_hard.TITLE, w2_hard.run),
    "W3": (w3.TITLE, w3.run),
    "W4": (w4.TITLE, w4.run),
    "W5": (w5.TITLE, w5.run),
    "W7": (w7.TITLE, w7.run),
}
