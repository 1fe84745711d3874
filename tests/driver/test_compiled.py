"""Fixed-grid steps compiled in chunks: ``options={'compile': True}``.

Each distinct field compiles once (seconds), so the tests share a few fields.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from torch._dynamo.utils import counters

import torchnode

F64 = torch.float64
MATRIX = [[-0.1, 2.0], [-2.0, -0.1]]

pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None,
    reason="torch.compile on CPU needs a C++ compiler",
)


class Spiral(torch.nn.Module):
    """dy/dt = A y, counting its calls the way user code often does."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("a", torch.tensor(MATRIX, dtype=F64))
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return y @ self.a.T


def test_compiled_rk4_matches_the_ordinary_steps_and_the_exact_flow():
    field = Spiral()
    y0 = torch.tensor([[2.0, 0.0], [0.5, -1.0]], dtype=F64)
    # Outputs off the regular grid become grid nodes inside chunks; 0.37 steps
    # of 0.01 leave a remainder after the last whole chunk.
    t = torch.arange(0.0, 7.5, 0.37, dtype=F64)
    opts = {"step_size": 0.01}
    plain = torchnode.solve(field, y0, t, method="rk4", options=opts)
    calls = field.nfe
    comp = torchnode.solve(
        field, y0, t, method="rk4", options={**opts, "compile": True}
    )
    assert comp.stats.nfe == plain.stats.nfe == field.nfe - calls
    assert comp.stats.n_steps == plain.stats.n_steps
    torch.testing.assert_close(comp.ys, plain.ys, rtol=1e-13, atol=1e-14)
    expm = scipy.linalg.expm(np.array(MATRIX) * float(t[-1]))
    exact = torch.from_numpy(y0.numpy() @ expm.T)
    coarse = torchnode.solve(
        field, y0, t, method="rk4", options={"step_size": 0.02, "compile": True}
    )
    # Fourth order: halving the step divides the error by about 16.
    err_fine = (comp.ys[-1] - exact).abs().max().item()
    err_coarse = (coarse.ys[-1] - exact).abs().max().item()
    assert 14 < err_coarse / err_fine < 18


def test_a_second_solve_reuses_the_compiled_chunk():
    field = Spiral()
    y0 = torch.tensor([[1.0, 1.0]], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    opts = {"step_size": 0.01, "compile": True}
    torchnode.solve(field, y0, t, method="rk4", options=opts)
    torchnode.solve(field, y0, t, method="rk4", options=opts)
    graphs = counters["stats"]["unique_graphs"]
    calls = field.nfe
    sol = torchnode.solve(field, y0, t, method="rk4", options=opts)
    # No new graph although the field's call count (a module integer) changed.
    assert counters["stats"]["unique_graphs"] == graphs
    assert field.nfe - calls == sol.stats.nfe == 400


class Tanh(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(3, 3, generator=gen, dtype=F64) * 0.5)
        self.b = torch.nn.Parameter(torch.randn(3, generator=gen, dtype=F64) * 0.1)

    def forward(self, t, y):
        return torch.tanh(y @ self.w.T + self.b) * torch.cos(t)


@pytest.mark.parametrize("gradient", ["direct", "checkpoint", "adjoint"])
def test_gradients_through_compiled_steps_match_the_ordinary_ones(gradient):
    field = Tanh()
    y0 = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 0.5, 1.3], dtype=F64)

    def grads(compile_: bool) -> list[torch.Tensor]:
        opts = {"step_size": 0.05, "compile": compile_}
        sol = torchnode.solve(
            field, y0, t, method="midpoint", options=opts, gradient=gradient
        )
        loss = sol.ys.square().sum()
        return list(torch.autograd.grad(loss, list(field.parameters())))

    for got, want in zip(grads(True), grads(False)):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-13)


def test_tuple_state_and_cubic_interpolation_between_nodes():
    def f(t, state):
        x, v = state
        return v, -x

    y0 = (torch.tensor([1.0], dtype=F64), torch.tensor([0.0], dtype=F64))
    t = torch.tensor([0.0, 0.123, 2.0, 3.21], dtype=F64)
    opts = {"step_size": 0.05, "interp": "cubic"}
    plain = torchnode.solve(f, y0, t, method="rk4", options=opts)
    comp = torchnode.solve(f, y0, t, method="rk4", options={**opts, "compile": 2})
    for got, want in zip(comp.ys, plain.ys):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-14)
    # Interpolated between nodes: the cubic Hermite error at h = 0.05.
    torch.testing.assert_close(
        comp.ys[0][:, 0], torch.cos(t), rtol=0, atol=2e-6, check_dtype=False
    )


def test_compile_setting_is_checked():
    f = Spiral()
    y0 = torch.ones(1, 2, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(ValueError, match=r"options\['compile'\].*got 0"):
        torchnode.solve(f, y0, t, method="rk4", options={"compile": 0})
    with pytest.warns(UserWarning, match="'compile' has no effect with method"):
        torchnode.solve(f, y0, t, method="dopri5", options={"compile": True})


def test_a_field_that_cannot_be_compiled_falls_back_with_a_warning(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: broken)
    f = Spiral()
    y0 = torch.ones(1, 2, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    plain = torchnode.solve(f, y0, t, method="rk4", options={"step_size": 0.1})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sol = torchnode.solve(
            f, y0, t, method="rk4", options={"step_size": 0.1, "compile": True}
        )
    assert any("no compiler here" in str(w.message) for w in seen)
    assert seen[0].filename == __file__
    assert sol.stats.nfe == plain.stats.nfe
    torch.testing.assert_close(sol.ys, plain.ys, rtol=0, atol=0)
