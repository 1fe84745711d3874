"""Peak RSS of one forward+backward, measured in a fresh process.

``python -m benchmarks.memory --library L --mode M --steps N --batch B`` prints
one JSON line: the resident set after imports and set-up (baseline, from
/proc/self/statm), the peak so far at that moment (import peak) and the peak
after the forward+backward (both from ``resource.getrusage(...).ru_maxrss``).

On Linux a process started from a large parent begins with the parent's
ru_maxrss, so this module first starts as a small launcher (no torch imported)
which runs the measurement in its own child process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SIZES = [64, 256, 256, 64]


def max_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux: KiB units)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024
    return kib * scale / 1024 / 1024


def current_rss_mb() -> float | None:
    """Resident set size now, in MB, or None where /proc is missing."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * resource.getpagesize() / 1024 / 1024


def measure(library: str, mode: str, steps: int, batch: int, device: str) -> dict:
    import torch

    from benchmarks.adapters import Spec, load_adapters
    from benchmarks.fields import CountingField, MLPField
    from benchmarks.runner import make_run

    adapters, notes = load_adapters([library])
    if not adapters:
        raise SystemExit(notes[0] if notes else f"unknown library {library}")
    field = CountingField(MLPField(SIZES, seed=0)).to(device)
    gen = torch.Generator().manual_seed(1)
    y0 = torch.randn(batch, SIZES[0], generator=gen).to(device)
    t = torch.tensor([0.0, 1.0], device=device)
    spec = Spec("rk4", 1e-6, 1e-6, {"step_size": 1.0 / steps}, mode=mode)
    run = make_run(adapters[0], field, y0, t, spec)
    baseline, import_peak = current_rss_mb(), max_rss_mb()
    start = time.perf_counter()
    outcome = run()
    elapsed = time.perf_counter() - start
    return {
        "baseline_mb": baseline,
        "import_peak_mb": import_peak,
        "peak_mb": max_rss_mb(),
        "seconds": elapsed,
        "nfe_forward": outcome.nfe_forward,
        "nfe_backward": outcome.nfe_backward,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--library", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child:
        cmd = [sys.executable, "-m", "benchmarks.memory", "--child", *sys.argv[1:]]
        return subprocess.run(cmd).returncode
    report = measure(args.library, args.mode, args.steps, args.batch, args.device)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
