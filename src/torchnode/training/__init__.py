"""Training runs for the registered tasks: loop, run folders, resume, DDP."""

from .config import ConfigError, TrainConfig
from .loop import RunError, evaluate_model, load_run, resolve, train

__all__ = [
    "ConfigError",
    "RunError",
    "TrainConfig",
    "evaluate_model",
    "load_run",
    "resolve",
    "train",
]
