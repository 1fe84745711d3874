"""The benchmark harness's statistics, table and runner on synthetic input, plus
one tiny real run for torchdiffeq when it is installed."""

from __future__ import annotations

import json

import pytest
import torch
from benchmarks.cli import skip_notes, write_json
from benchmarks.results import Row, WorkloadResult, add_ratios, fmt_num, format_table
from benchmarks.runner import Outcome, time_interleaved
from benchmarks.stats import median, ratio, rotated, value_range


def test_median_and_range():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert value_range([3.0, 1.0, 2.0]) == (1.0, 3.0)
    with pytest.raises(ValueError):
        median([])


def test_ratio_handles_missing_values():
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(None, 4.0) is None
    assert ratio(2.0, None) is None
    assert ratio(2.0, 0.0) is None


def test_rotation_covers_every_position():
    names = ["a", "b", "c"]
    orders = [rotated(names, k) for k in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert {o[0] for o in orders} == set(names)
    assert rotated([], 2) == []


def _rows() -> list[Row]:
    return [
        Row("W0", "case", "torchdiffeq", "direct", [0.010, 0.012, 0.011]),
        Row("W0", "case", "torchnode", "direct", [0.005, 0.006, 0.0055], 12, 0),
        Row("W0", "case", "torchnode", "checkpoint", [0.02], metrics={"err": 1e-9}),
        Row("W0", "case", "other", "direct", error="ValueError: no"),
    ]


def test_ratios_are_ratios_of_medians_to_the_baseline():
    rows = _rows()
    add_ratios(rows)
    assert rows[0].median_s == pytest.approx(0.011)
    assert rows[0].ratio_to_baseline == pytest.approx(1.0)
    assert rows[1].ratio_to_baseline == pytest.approx(0.0055 / 0.011)
    assert rows[1].min_s == 0.005 and rows[1].max_s == 0.006
    assert rows[2].ratio_to_baseline is None  # no baseline in that mode
    assert rows[3].median_s is None


def test_table_is_aligned_and_shows_failures():
    rows = _rows()
    add_ratios(rows)
    text = format_table(WorkloadResult("W0", "synthetic", rows, ["a note"]))
    lines = text.splitlines()
    assert lines[0] == "== W0: synthetic"
    header, body = lines[1], lines[2:6]
    for column in ("library", "mode", "median ms", "x tdq", "NFE f/b"):
        start = header.index(column)
        assert all(line[start - 2 : start] == "  " for line in body)
    assert "0.50" in body[1] and "12/0" in body[1] and "5.5" in body[1]
    assert "err=1.00e-09" in body[2]
    assert "failed: ValueError: no" in body[3]
    assert lines[-1] == "  note: a note"


def test_number_formatting():
    assert fmt_num(None) == "-"
    assert fmt_num(7) == "7"
    assert fmt_num(0.0) == "0"
    assert fmt_num(0.5) == "0.5"
    assert fmt_num(2.5e-7) == "2.50e-07"


def test_skip_notes_group_libraries_by_reason():
    notes = skip_notes({("no method rk4", "b"), ("no method rk4", "a"), ("x", "c")})
    assert notes == ["skipped (no method rk4): a, b", "skipped (x): c"]


def test_interleaved_timing_rotates_order_and_records_errors():
    calls: list[str] = []

    def make(name: str):
        def run() -> Outcome:
            calls.append(name)
            return Outcome(torch.zeros(1), len(calls))

        return run

    def broken() -> Outcome:
        raise RuntimeError("boom")

    runs = {"a": make("a"), "b": make("b"), "bad": broken}
    times, last, errors = time_interleaved(runs, reps=2, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a"]
    assert set(times) == {"a", "b"} and all(len(v) == 2 for v in times.values())
    assert errors == {"bad": "RuntimeError: boom"}
    assert last["a"].nfe_forward == 6


def test_tiny_real_workload_with_torchdiffeq(tmp_path):
    pytest.importorskip("torchdiffeq")
    from benchmarks.adapters import Spec, load_adapters
    from benchmarks.workloads import w5
    from benchmarks.workloads.common import Context

    adapters, _ = load_adapters(["torchdiffeq"])
    ctx = Context(adapters, reps=2, warmup=1)
    field, y0, t = w5.problem("cpu")
    result = WorkloadResult("W5", "tiny")
    for mode in ("forward", "adjoint"):
        spec = Spec("dopri5", 1e-5, 1e-5, mode=mode)
        rows, last = ctx.case("W5", "tiny", field, y0, t, spec)
        result.rows.extend(rows)
    add_ratios(result.rows)
    forward, adjoint = result.rows
    assert forward.error is None and adjoint.error is None
    assert len(forward.times_s) == 2 and forward.ratio_to_baseline == 1.0
    assert forward.nfe_forward > 0 and forward.nfe_backward is None
    assert adjoint.nfe_backward > 0
    assert len(last["torchdiffeq"].grads) == len(list(field.parameters()))
    out = tmp_path / "r.json"
    write_json(out, {"cpu": "x"}, ctx, [], [result], 0.0)
    assert json.loads(out.read_text())["workloads"][0]["rows"][1]["mode"] == "adjoint"
