"""The ``torchnode`` command line: ``train``, ``evaluate``, ``compare`` and
``tasks``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake in the command's input: reported in one line, no traceback."""


def _task_names() -> list[str]:
    from torchnode.tasks.registry import TASKS

    return list(TASKS)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, then exit code 2
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="torchnode", description="Train and evaluate neural ODEs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model on a task")
    t.add_argument("task", nargs="?", default=None, help="task name (default: digits)")
    t.add_argument("--model", help="node, anode or resnet (task's choices)")
    t.add_argument("--method", help="solver method, e.g. dopri5, rk4, euler")
    t.add_argument("--rtol", type=float)
    t.add_argument("--atol", type=float)
    t.add_argument("--gradient", choices=("direct", "adjoint", "checkpoint"))
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int, dest="batch_size")
    t.add_argument("--lr", type=float)
    t.add_argument("--lr-schedule", choices=("constant", "cosine"), dest="lr_schedule")
    t.add_argument("--weight-decay", type=float, dest="weight_decay")
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="cpu (default), cuda, cuda:1, ...")
    t.add_argument("--dtype", choices=("float32", "float64"))
    t.add_argument(
        "--threads", type=int, help="CPU threads (default 1; 0: torch's default)"
    )
    t.add_argument(
        "--limit-batches",
        type=int,
        dest="limit_batches",
        help="train on at most this many batches per epoch (smoke tests)",
    )
    t.add_argument("--out", help="run folder (default: runs/<task>-<model>-<time>)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    t.add_argument("--config", metavar="FILE", help="TOML file of settings")
    t.add_argument("--force", action="store_true", help="replace an existing --out")
    t.add_argument("--quiet", action="store_true", help="no progress output")

    e = sub.add_parser("evaluate", help="re-evaluate a run at other solver settings")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--method", action="append", help="adaptive method (repeatable)")
    e.add_argument("--rtol", type=float, action="append", help="repeatable")
    e.add_argument(
        "--euler-steps",
        type=int,
        action="append",
        dest="euler_steps",
        help="fixed Euler step counts (repeatable; 0 to skip Euler)",
    )
    e.add_argument("--quiet", action="store_true")

    c = sub.add_parser(
        "compare", help="train resnet, node and anode on one task and report"
    )
    c.add_argument(
        "task",
        nargs="?",
        default="crossing",
        choices=("crossing", "circles", "digits"),
        help="task (default: crossing)",
    )
    c.add_argument("--out", help="report folder (default: runs/compare-<task>-<time>)")
    c.add_argument("--epochs", type=int, help="epochs for every model")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1; 0: torch's default)",
    )
    c.add_argument("--quick", action="store_true", help="tiny budget (seconds)")
    c.add_argument("--quiet", action="store_true", help="no progress output")

    sub.add_parser("tasks", help="list the tasks")
    return p


# ---------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------


class _Progress:
    """A tqdm bar per epoch and one fixed-format line per epoch."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def epoch_start(self, epoch: int, epochs: int, n_batches: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        self.bar = tqdm(
            total=n_batches,
            desc=f"epoch {epoch}/{epochs}",
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def batch_end(self, loss: float, metric: float, nfe_f: int, nfe_b: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", metric=f"{metric:.4f}", nfe=nfe_f)
            self.bar.update(1)

    def epoch_end(self, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.quiet:
            return
        width = len(str(row["epochs"]))
        print(
            f"epoch {row['epoch']:>{width}}/{row['epochs']} "
            f"loss {row['loss']:.4f} "
            f"train_{row['metric']} {row['train_metric']:.4f} "
            f"test_{row['metric']} {row['test_metric']:.4f} "
            f"nfe {row['nfe_forward']:.1f}/{row['nfe_backward']:.1f} "
            f"time {row['seconds']:.1f}s "
            f"mem {row['peak_memory_mb']:.0f}MB",
            flush=True,
        )

    def message(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

_TRAIN_KEYS = (
    "model",
    "method",
    "rtol",
    "atol",
    "gradient",
    "epochs",
    "batch_size",
    "lr",
    "lr_schedule",
    "weight_decay",
    "seed",
    "device",
    "dtype",
    "threads",
    "limit_batches",
)


def _cmd_train(args: argparse.Namespace) -> int:
    from torchnode.training import ConfigError, RunError, TrainConfig, train
    from torchnode.training.config import read_config_file

    flags = {k: getattr(args, k) for k in _TRAIN_KEYS if getattr(args, k) is not None}
    if args.task is not None:
        flags["task"] = args.task
    try:
        if args.resume:
            run_dir = Path(args.resume)
            if args.out and Path(args.out) != run_dir:
                raise UserError("--resume continues in its own folder; drop --out")
            config_file = run_dir / "config.toml"
            if not config_file.is_file():
                raise UserError(f"cannot resume: no config.toml in {run_dir}")
            if not (run_dir / "checkpoint.pt").is_file():
                raise UserError(f"cannot resume: no checkpoint.pt in {run_dir}")
            base = TrainConfig().updated(read_config_file(config_file))
            if args.config:
                base = base.updated(read_config_file(args.config))
            config = base.updated(flags)
        else:
            base = TrainConfig()
            if args.config:
                base = base.updated(read_config_file(args.config))
            config = base.updated(flags)
            from torchnode.training import resolve

            config, _ = resolve(config)
            if args.out:
                run_dir = Path(args.out)
            else:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                run_dir = Path("runs") / f"{config.task}-{config.model}-{stamp}"
            if run_dir.exists() and not run_dir.is_dir():
                raise UserError(f"--out {run_dir} is a file, not a folder")
            if run_dir.exists() and any(run_dir.iterdir()):
                if not args.force:
                    raise UserError(
                        f"output folder {run_dir} exists; use --resume {run_dir} to "
                        "continue it or --force to replace it"
                    )
                _clear_run(run_dir)
        summary = train(
            config, run_dir, resume=bool(args.resume), reporter=_Progress(args.quiet)
        )
    except (ConfigError, RunError, FileNotFoundError, NotADirectoryError) as exc:
        raise UserError(str(exc)) from None
    except ValueError as exc:
        # Settings the solver refuses (a method without the chosen gradient mode).
        raise UserError(f"invalid settings: {exc}") from None
    if not args.quiet:
        print(json.dumps(summary))
    return 0


def _clear_run(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise UserError(f"output path {run_dir} exists and is not a folder")
    try:
        for child in run_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    except OSError as exc:
        raise UserError(f"cannot clear output folder {run_dir}: {exc}") from None


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from torchnode.training import ConfigError, RunError
    from torchnode.training.sweep import sweep, write_sweep

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"no run folder {run_dir}")
    bad = [r for r in args.rtol or [] if not r > 0]
    if bad:
        raise UserError(f"--rtol must be positive, got {bad[0]}")
    bad_steps = [n for n in args.euler_steps or [] if n < 1]
    if bad_steps:
        raise UserError(f"--euler-steps must be at least 1, got {bad_steps[0]}")
    try:
        rows, metric = sweep(
            run_dir,
            methods=args.method or ["dopri5"],
            rtols=args.rtol or [1e-1, 1e-2, 1e-3, 1e-5],
            euler_steps=args.euler_steps or [2, 4, 8, 16],
        )
        paths = write_sweep(run_dir, rows, metric)
    except (ConfigError, RunError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    if not args.quiet:
        print(f"{'method':<10} {'rtol':>8} {'steps':>6} {metric:>10} {'nfe':>8}")
        for r in rows:
            rtol = "-" if r["rtol"] is None else f"{r['rtol']:g}"
            steps = "-" if r["steps"] is None else str(r["steps"])
            print(
                f"{r['method']:<10} {rtol:>8} {steps:>6} {r['metric']:>10.4f} "
                f"{r['nfe_forward']:>8.1f}"
            )
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {args.epochs}")
    if args.threads is not None and args.threads < 0:
        raise UserError("--threads must be 0 (torch's default) or positive")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from torchnode.compare import budget_for, run_comparison, write_report

    if args.out:
        out = Path(args.out)
    else:
        out = Path("runs") / f"compare-{args.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} exists and is not a folder")

    def progress(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    budget = budget_for(args.task, quick=args.quick, epochs=args.epochs)
    comp = run_comparison(
        args.task, seed=args.seed, budget=budget, quick=args.quick, progress=progress
    )
    try:
        paths = write_report(comp, out)
    except OSError as exc:
        raise UserError(f"cannot write the report to {out}: {exc}") from None
    if not args.quiet:
        for name, r in comp.summary["models"].items():
            print(
                f"{name:<9} accuracy {r['accuracy']:.3f} loss {r['loss']:.4f} "
                f"params {r['params']} nfe {r['nfe_forward']:.1f}/"
                f"{r['nfe_backward']:.1f} time {r['wall_time_s']:.1f}s"
            )
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    from torchnode.tasks.registry import TASKS

    print(f"{'task':<14} {'kind':<15} {'models':<18} {'epochs':>6}  description")
    for t in TASKS.values():
        models = ",".join(t.models)
        print(f"{t.name:<14} {t.kind:<15} {models:<18} {t.epochs:>6}  {t.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    commands = {
        "train": _cmd_train,
        "evaluate": _cmd_evaluate,
        "compare": _cmd_compare,
        "tasks": _cmd_tasks,
    }
    try:
        return commands[args.command](args)
    except UserError as exc:
        print(f"torchnode: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("torchnode: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
