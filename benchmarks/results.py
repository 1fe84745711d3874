"""Result records and the text table."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.stats import median, ratio, value_range

BASELINE = "torchdiffeq"
Metric = float | int | str | None


@dataclass
class Row:
    """One (case, library, mode) cell of a workload."""

    workload: str
    case: str
    library: str
    mode: str = "forward"
    times_s: list[float] = field(default_factory=list)
    nfe_forward: int | None = None
    nfe_backward: int | None = None
    metrics: dict[str, Metric] = field(default_factory=dict)
    error: str | None = None
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    ratio_to_baseline: float | None = None

    def summarize(self) -> None:
        if self.times_s:
            self.median_s = median(self.times_s)
            self.min_s, self.max_s = value_range(self.times_s)


@dataclass
class WorkloadResult:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def add_ratios(rows: list[Row]) -> None:
    """Summarize timings and set each row's ratio of medians to the baseline."""
    for row in rows:
        row.summarize()
    base = {(r.case, r.mode): r.median_s for r in rows if r.library == BASELINE}
    for row in rows:
        row.ratio_to_baseline = ratio(row.median_s, base.get((row.case, row.mode)))


def fmt_num(value: Metric, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits}g}"
    return f"{value:.{max(digits - 1, 1)}e}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.3g}"


HEADER = ("case", "library", "mode", "median ms", "range ms", "x tdq", "NFE f/b")


def row_cells(row: Row) -> list[str]:
    if row.min_s is None:
        span = "-"
    else:
        span = f"{_ms(row.min_s)}-{_ms(row.max_s)}"
    nfe = f"{fmt_num(row.nfe_forward)}/{fmt_num(row.nfe_backward)}"
    details = " ".join(f"{k}={fmt_num(v)}" for k, v in row.metrics.items())
    if row.error:
        details = f"failed: {row.error}"
    ratio_text = (
        "-" if row.ratio_to_baseline is None else f"{row.ratio_to_baseline:.2f}"
    )
    return [
        row.case,
        row.library,
        row.mode,
        _ms(row.median_s),
        span,
        ratio_text,
        nfe,
        details,
    ]


def format_table(result: WorkloadResult) -> str:
    """Aligned text table of one workload, its notes below it."""
    body = [row_cells(r) for r in result.rows]
    header = [*HEADER, "details"]
    widths = [max(len(c[i]) for c in [header, *body]) for i in range(len(header))]
    lines = [f"== {result.name}: {result.title}"]
    for cells in [header, *body]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    lines.extend(f"  note: {n}" for n in result.notes)
    return "\n".join(lines)
