"""Pure statistics over repeated timings."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def value_range(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        raise ValueError("range of no values")
    return float(min(values)), float(max(values))


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or None when either is missing or baseline is 0."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def rotated(items: Sequence[str], shift: int) -> list[str]:
    """``items`` rotated left by ``shift`` (the order of one repetition)."""
    if not items:
        return []
    k = shift % len(items)
    return list(items[k:]) + list(items[:k])
