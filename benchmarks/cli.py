"""Command line: ``python -m benchmarks [--quick] [--only W1,W2] [--out FILE]``."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.adapters import load_adapters
from benchmarks.machine import header_lines, machine_info
from benchmarks.results import WorkloadResult, add_ratios, format_table
from benchmarks.workloads import WORKLOADS
from benchmarks.workloads.common import Context

TORCHODE_NOTE = (
    "torchode: same rtol/atol, but one step size per batch row with an RMS error "
    "norm over that row (the others: one step size, RMS over the whole batch)"
)
DEFAULT_OUT = Path(__file__).parent / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", default="", help="comma list, e.g. W1,W2")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--reps", type=int, default=None, help="at least 5")
    parser.add_argument("--libraries", default="", help="comma list to restrict")
    return parser.parse_args(argv)


def selected(only: str) -> list[str]:
    names = [n.strip().upper() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; known: {list(WORKLOADS)}")
    return names or list(WORKLOADS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = selected(args.only)
    libs = [n.strip() for n in args.libraries.split(",") if n.strip()] or None
    adapters, notes = load_adapters(libs)
    ctx = Context(
        adapters, quick=args.quick, reps=max(args.reps or 5, 5), device=args.device
    )
    info = machine_info(adapters, args.device)
    print("\n".join(header_lines(info) + [f"note: {n}" for n in notes]), flush=True)
    results, started = [], time.perf_counter()
    for name in names:
        result = run_workload(name, ctx)
        results.append(result)
        print("\n" + format_table(result), flush=True)
    elapsed = time.perf_counter() - started
    write_json(args.out, info, ctx, notes, results, elapsed)
    print(f"\n{elapsed:.0f} s; wrote {args.out}")
    return 0


def run_workload(name: str, ctx: Context) -> WorkloadResult:
    ctx.skips = set()
    result = WORKLOADS[name][1](ctx)
    add_ratios(result.rows)
    result.notes.extend(skip_notes(ctx.skips))
    if any(r.library == "torchode" and r.mode != "checkpoint" for r in result.rows):
        result.notes.append(TORCHODE_NOTE)
    return result


def skip_notes(skips: set[tuple[str, str]]) -> list[str]:
    """One note per reason, naming the libraries skipped for it."""
    by_reason: dict[str, list[str]] = {}
    for reason, library in sorted(skips):
        by_reason.setdefault(reason, []).append(library)
    return [
        f"skipped ({reason}): {', '.join(libs)}" for reason, libs in by_reason.items()
    ]


def write_json(out: Path, info, ctx: Context, notes, results, elapsed) -> None:
    payload = {
        "machine": info,
        "config": {"quick": ctx.quick, "reps": ctx.reps, "warmup": ctx.warmup},
        "notes": notes,
        "elapsed_s": elapsed,
        "workloads": [asdict(r) for r in results],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
