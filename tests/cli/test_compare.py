"""``torchnode compare``: the files it writes, and the measurements behind them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from torchnode.cli import main
from torchnode.compare import (
    MODELS,
    budget_for,
    build_models,
    evaluate,
    memory_sweep,
    train_model,
)
from torchnode.tasks.registry import get_task

MODEL_KEYS = {
    "accuracy",
    "loss",
    "params",
    "nfe_forward",
    "nfe_backward",
    "peak_memory_mb",
    "wall_time_s",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "crossing"
    args = ["compare", "crossing", "--quick", "--out", str(out), "--threads", "1"]
    assert main([*args, "--quiet"]) == 0
    return out


def test_quick_run_writes_report_summary_and_figures(quick_run: Path) -> None:
    names = {p.name for p in quick_run.iterdir()}
    assert {"report.md", "summary.json"} <= names
    pngs = {n for n in names if n.endswith(".png")}
    assert {
        "trajectories.png",
        "memory.png",
        "accuracy_vs_nfe.png",
        "nfe_training.png",
    } <= pngs
    for png in pngs:
        assert (quick_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (quick_run / "report.md").read_text()
    for png in pngs:
        assert f"({png})" in report


def test_summary_has_every_key(quick_run: Path) -> None:
    summary = json.loads((quick_run / "summary.json").read_text())
    assert summary["task"] == "crossing" and summary["seed"] == 0
    for name in MODELS:
        assert set(summary["models"][name]) >= MODEL_KEYS
    for key in ("cpu", "cores", "python", "torch", "torchnode"):
        assert summary["machine"][key]
    rows = summary["memory"]["rows"]
    assert [r["depth"] for r in rows] == [4, 16, 64]
    assert {"resnet", "node_direct", "node_adjoint"} <= set(rows[0])
    assert set(summary["solver_sweep"]) == {"node", "anode", "node+reg"}
    assert set(summary["history"]) == {*MODELS, "node+reg"}


def test_report_states_the_summary_numbers(quick_run: Path) -> None:
    summary = json.loads((quick_run / "summary.json").read_text())
    report = (quick_run / "report.md").read_text()
    m = summary["machine"]
    assert m["cpu"] in report and f"{m['cores']} cores" in report
    assert f"python {m['python']}" in report and f"torch {m['torch']}" in report
    assert f"torchnode {m['torchnode']}" in report
    assert f"seed: {summary['seed']}" in report
    for name, r in summary["models"].items():
        row = re.search(rf"^\| {re.escape(name)} \| (.*) \|$", report, re.M)
        assert row is not None, name
        cells = [c.strip() for c in row.group(1).split("|")]
        assert cells[0] == f"{r['accuracy']:.3f}"
        assert cells[1] == f"{r['loss']:.4f}"
        assert cells[2] == str(r["params"])
        assert cells[3] == f"{r['nfe_forward']:.1f}"
        assert cells[4] == f"{r['nfe_backward']:.1f}"
        assert cells[5] == f"{r['peak_memory_mb']:.4f}"
        assert cells[6] == f"{r['wall_time_s']:.2f}"
    for r in summary["memory"]["rows"]:
        kib = [f"{r[k] / 1024:.1f}" for k in ("resnet", "node_direct", "node_adjoint")]
        assert f"| {r['depth']} | {' | '.join(kib)} |" in report


def test_unknown_task_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compare", "spiral", "--quick"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["compare", "--quick", "--epochs", "0"]) == 2


def test_crossing_node_cannot_fit_and_anode_and_resnet_can() -> None:
    torch.set_num_threads(1)
    data = get_task("crossing").load(0)
    budget = budget_for("crossing")
    models = build_models("crossing", data, seed=0, with_regularised=False)
    params = {
        name: sum(p.numel() for p in m.parameters()) for name, m in models.items()
    }
    assert max(params.values()) <= 1.2 * min(params.values())
    accuracy = {}
    for name, model in models.items():
        train_model("crossing", model, data, budget, seed=0)
        result = evaluate("crossing", model, data.x_test, data.y_test)
        accuracy[name] = result["accuracy"]
        if name == "node":
            assert result["loss"] > 0.9  # stalls near 1
    assert accuracy["node"] <= 0.5
    assert accuracy["anode"] == 1.0
    assert accuracy["resnet"] == 1.0


def test_memory_adjoint_flat_direct_and_resnet_grow() -> None:
    torch.set_num_threads(1)
    data = get_task("crossing").load(0)
    rows = memory_sweep("crossing", data, seed=0, depths=(4, 64), batch=64)
    first, last = rows
    assert last["node_adjoint"] / first["node_adjoint"] <= 1.1
    assert last["node_direct"] / first["node_direct"] >= 4
    assert last["resnet"] / first["resnet"] >= 4
