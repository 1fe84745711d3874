"""Pictures for the tasks, drawn with matplotlib's Agg backend into PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from .registry import TaskData

__all__ = [
    "plot_circles",
    "plot_crossing",
    "plot_hare_lynx",
    "plot_spiral",
    "pyplot",
    "save",
]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    return path


def _rollout(model: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
    """The model's own rollout of ``steps`` steps from ``x`` (series models)."""
    return cast(Any, model).rollout(x, steps)


def plot_spiral(model: nn.Module, data: TaskData, out: Path) -> list[Path]:
    """Phase portrait (data, truth, learned trajectory) and the learned field."""
    plt = pyplot()
    clean, noisy = data.extra["clean"].numpy(), data.extra["noisy"].numpy()
    with torch.no_grad():
        pred = _rollout(model, data.x_test, len(clean) - 1)[0].numpy()
    pred = np.concatenate([clean[:1], pred])
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(noisy[:, 0], noisy[:, 1], ".", ms=2, color="0.6", label="noisy data")
    ax.plot(clean[:, 0], clean[:, 1], "k-", lw=1, label="true")
    ax.plot(pred[:, 0], pred[:, 1], "r--", lw=1.2, label="learned")
    ax.set(xlabel="y1", ylabel="y2", title="spiral: phase portrait")
    ax.legend()
    paths = [save(fig, out / "phase_portrait.png")]

    lim = float(np.abs(clean).max()) * 1.1
    grid = np.linspace(-lim, lim, 21)
    gx, gy = np.meshgrid(grid, grid)
    # In the model's dtype: a run with --dtype float64 has float64 weights.
    dtype = next(model.parameters()).dtype
    pts = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=dtype)
    field: Any = model.ode.field  # type: ignore[union-attr]
    with torch.no_grad():
        v = field(torch.tensor(0.0, dtype=dtype), pts).numpy()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.quiver(gx, gy, v[:, 0].reshape(gx.shape), v[:, 1].reshape(gx.shape))
    ax.plot(clean[:, 0], clean[:, 1], "k-", lw=0.8)
    ax.set(xlabel="y1", ylabel="y2", title="learned vector field")
    paths.append(save(fig, out / "vector_field.png"))
    return paths


def plot_hare_lynx(model: nn.Module, data: TaskData, out: Path) -> list[Path]:
    """Observed pelts, the fitted trajectory and the forecast."""
    plt = pyplot()
    years, pelts, mean = data.extra["years"], data.extra["pelts"], data.extra["mean"]
    n_fit = data.extra["n_fit"]
    with torch.no_grad():
        pred = _rollout(model, data.x_test, len(years) - 1)[0].numpy()
    pred = np.concatenate([pelts[:1] / mean, pred]) * mean
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, color) in enumerate((("hare", "tab:blue"), ("lynx", "tab:red"))):
        ax.plot(years, pelts[:, i], "o", color=color, label=f"{name} data")
        ax.plot(years[:n_fit], pred[:n_fit, i], "-", color=color, label=f"{name} fit")
        ax.plot(
            years[n_fit - 1 :],
            pred[n_fit - 1 :, i],
            "--",
            color=color,
            label=f"{name} forecast",
        )
    ax.axvline(years[n_fit - 1] + 0.5, color="0.5", lw=0.8)
    ax.set(xlabel="year", ylabel="thousands of pelts", title="hare and lynx")
    ax.legend(fontsize=7, ncol=2)
    return [save(fig, out / "forecast.png")]


def plot_sunspots(model: nn.Module, data: TaskData, out: Path) -> list[Path]:
    """The last decades of data with the forecast and the persistence baseline."""
    plt = pyplot()
    years, values, scale = (
        data.extra["years"],
        data.extra["values"],
        data.extra["scale"],
    )
    offset = float(data.extra.get("offset", 0.0))
    n_test = data.y_test.shape[1]
    with torch.no_grad():
        pred = _rollout(model, data.x_test, n_test)[0, :, 0].numpy() * scale
    pred = pred + offset
    base = np.asarray(data.extra["baseline"]).reshape(-1) * scale + offset
    fig, ax = plt.subplots(figsize=(8, 4))
    shown = slice(len(years) - 4 * n_test, None)
    ax.plot(years[shown], values[shown], "k.-", lw=0.8, label="observed")
    ax.plot(years[-n_test:], pred, "r-", label="neural ODE forecast")
    ax.plot(years[-n_test:], base, "b:", label="persistence")
    ax.set(xlabel="year", ylabel="sunspot number", title="sunspots forecast")
    ax.legend()
    return [save(fig, out / "forecast.png")]


def _trajectories(model: nn.Module, x: torch.Tensor) -> np.ndarray | None:
    trajectory = getattr(model, "trajectory", None)
    flow: Any = getattr(model, "flow", None)
    if trajectory is None or not hasattr(flow, "field"):
        return None
    return trajectory(x).numpy()


def plot_crossing(model: nn.Module, data: TaskData, out: Path) -> list[Path]:
    """Paths of the two inputs through the flow (first coordinate over time)."""
    plt = pyplot()
    traj = _trajectories(model, data.x_test)
    fig, ax = plt.subplots(figsize=(5, 4))
    if traj is not None:
        t = np.linspace(0.0, 1.0, traj.shape[0])
        for i, color in enumerate(("tab:blue", "tab:red")):
            ax.plot(
                t, traj[:, i, 0], color=color, label=f"x0 = {data.x_test[i, 0]:+.0f}"
            )
        ax.set(xlabel="t", ylabel="state[0]")
    else:
        with torch.no_grad():
            y = model(data.x_test).numpy()
        ax.plot([0, 1], [data.x_test.numpy()[:, 0], y[:, 0]], "o-")
        ax.set(xlabel="layer (0 = input, 1 = output)", ylabel="value")
    ax.set(title="crossing: trajectories")
    ax.legend()
    return [save(fig, out / "trajectories.png")]


def plot_circles(model: nn.Module, data: TaskData, out: Path) -> list[Path]:
    """Paths of test points through the flow, coloured by class."""
    plt = pyplot()
    x, labels = data.x_test[:200], data.y_test[:200].numpy()
    traj = _trajectories(model, x)
    colors = np.where(labels == 0, "tab:blue", "tab:red")
    if traj is not None and traj.shape[2] >= 3:
        fig = plt.figure(figsize=(5, 5))
        ax = fig.add_subplot(projection="3d")
        for i in range(traj.shape[1]):
            ax.plot(
                traj[:, i, 0], traj[:, i, 1], traj[:, i, 2], color=colors[i], lw=0.5
            )
    else:
        fig, ax = plt.subplots(figsize=(5, 5))
        if traj is not None:
            for i in range(traj.shape[1]):
                ax.plot(traj[:, i, 0], traj[:, i, 1], color=colors[i], lw=0.5)
        ax.scatter(x[:, 0], x[:, 1], c=colors, s=6)
    ax.set(title="circles: trajectories")
    return [save(fig, out / "trajectories.png")]
