"""Re-evaluating a trained run at other solver settings."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from torchnode.tasks.models import ode_blocks, solver_overrides

from .loop import _atomic_write_text, evaluate_model, load_run

__all__ = ["sweep", "write_sweep"]


def sweep(
    run_dir: Path,
    methods: list[str],
    rtols: list[float],
    euler_steps: list[int],
) -> tuple[list[dict[str, Any]], str]:
    """Test metric and forward NFE of the run's model for each solver setting.

    Adaptive methods run at every ``rtol`` (with ``atol = rtol / 10``); Euler runs
    with each fixed number of steps over the block's time span.
    """
    import torchnode

    from .config import ConfigError

    for m in methods:
        if m not in torchnode.methods():
            raise ConfigError(
                f"unknown method {m!r}; valid methods: {', '.join(torchnode.methods())}"
            )
    config, task, model, data = load_run(run_dir)
    blocks = ode_blocks(model)
    if not blocks:
        raise ConfigError(
            f"the run's model ({config.model}) has no ODE block to re-solve"
        )
    t_span: Any = blocks[0].t_span
    span = float(abs(t_span[1] - t_span[0]))
    rows = []
    settings: list[tuple[str, float | None, int | None, dict[str, Any]]] = []
    for m in methods:
        for r in rtols:
            settings.append((m, r, None, {"method": m, "rtol": r, "atol": r / 10}))
    for n in euler_steps:
        opts = {"step_size": span / n}
        settings.append(("euler", None, n, {"method": "euler", "options": opts}))
    for method, rtol, steps, overrides in settings:
        with solver_overrides(model, **overrides):
            result = evaluate_model(task, model, data)
        rows.append(
            {
                "method": method,
                "rtol": rtol,
                "steps": steps,
                "metric": result["metric"],
                "nfe_forward": float(result["nfe_forward"]),
            }
        )
    return rows, task.metric


def write_sweep(run_dir: Path, rows: list[dict[str, Any]], metric: str) -> list[Path]:
    """``evaluate.csv`` and ``metric_vs_nfe.png`` in the run folder."""
    from torchnode.tasks.plots import pyplot, save

    buf = io.StringIO()
    fields = ["method", "rtol", "steps", "metric", "nfe_forward"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r[k] is None else r[k] for k in fields})
    table = run_dir / "evaluate.csv"
    _atomic_write_text(table, buf.getvalue())

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted(
            (r["nfe_forward"], r["metric"]) for r in rows if r["method"] == method
        )
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=method)
    ax.set_xscale("log")
    ax.set(
        xlabel="function evaluations per test batch (forward)",
        ylabel=f"test {metric}",
        title=f"test {metric} vs cost",
    )
    ax.legend()
    return [table, save(fig, run_dir / "metric_vs_nfe.png")]
