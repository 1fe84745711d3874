"""The PNG pictures of a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from torchnode.tasks.plots import pyplot, save
from torchnode.tasks.registry import Task, TaskData

__all__ = ["write_figures"]


def write_figures(
    task: Task,
    model: nn.Module,
    data: TaskData,
    rows: list[dict[str, Any]],
    final: dict[str, Any],
    out: Path,
) -> list[Path]:
    """Loss and metric curves, NFE per epoch, the task's own pictures, and a
    confusion matrix for classification."""
    plt = pyplot()
    epochs = [r["epoch"] for r in rows]
    paths = []

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(epochs, [r["loss"] for r in rows], "o-")
    ax.set(xlabel="epoch", ylabel="training loss", title=f"{task.name}: loss")
    if rows and min(r["loss"] for r in rows) > 0:
        ax.set_yscale("log")
    paths.append(save(fig, out / "loss.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(epochs, [r["train_metric"] for r in rows], "o-", label="train")
    ax.plot(epochs, [r["test_metric"] for r in rows], "s-", label="test")
    ax.set(xlabel="epoch", ylabel=task.metric, title=f"{task.name}: {task.metric}")
    ax.legend()
    paths.append(save(fig, out / "metric.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(epochs, [r["nfe_forward"] for r in rows], "o-", label="forward")
    ax.plot(epochs, [r["nfe_backward"] for r in rows], "s-", label="backward")
    ax.set(xlabel="epoch", ylabel="evaluations per batch", title="NFE")
    ax.legend()
    paths.append(save(fig, out / "nfe.png"))

    if task.kind == "classification" and "predictions" in final:
        classes = data.extra.get("classes") or list(range(int(data.y_test.max()) + 1))
        k = len(classes)
        matrix = np.zeros((k, k), dtype=np.int64)
        np.add.at(matrix, (data.y_test.cpu().numpy(), final["predictions"].numpy()), 1)
        fig, ax = plt.subplots(figsize=(5, 4.5))
        im = ax.imshow(matrix, cmap="Blues")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(k), [str(c) for c in classes], rotation=90, fontsize=7)
        ax.set_yticks(range(k), [str(c) for c in classes], fontsize=7)
        ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (test)")
        fig.colorbar(im, ax=ax)
        paths.append(save(fig, out / "confusion_matrix.png"))

    if task.plot is not None:
        cpu = TaskData(
            data.x_train.cpu(),
            data.y_train.cpu(),
            data.x_test.cpu(),
            data.y_test.cpu(),
            data.extra,
        )
        model.eval()
        paths.extend(task.plot(model, cpu, out))
    return paths
