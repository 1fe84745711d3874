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
    for bad in (0, -1, 2.5, "yes"):
        with pytest.raises(ValueError, match=r"options\['compile'\]"):
            torchnode.solve(f, y0, t, method="rk4", options={"compile": bad})
    for fine in (np.int64(3), None, False):
        sol = torchnode.solve(f, y0, t, method="rk4", options={"compile": fine})
        assert sol.stats.n_steps == 1
    with pytest.warns(UserWarning, match="'compile' has no effect with method"):
        torchnode.solve(f, y0, t, method="dopri5", options={"compile": True})


def _bs3(fsal: bool) -> torchnode.ButcherTableau:
    """Bogacki-Shampine's third-order method, as a fixed-step tableau."""
    return torchnode.ButcherTableau(
        name="bs3",
        c=(0.0, 0.5, 0.75, 1.0),
        a=((), (0.5,), (0.0, 0.75), (2 / 9, 1 / 3, 4 / 9)),
        b=(2 / 9, 1 / 3, 4 / 9, 0.0),
        order=3,
        source="Bogacki and Shampine (1989)",
        fsal=fsal,
    )


def test_fsal_tableau_and_cubic_outputs_inside_chunks_cost_no_extra_calls():
    field = Spiral()
    y0 = torch.tensor([[2.0, 0.0]], dtype=F64)
    t = torch.linspace(0.0, 1.0, 301, dtype=F64)
    # bs3 reuses its last stage: three new evaluations a step, one to start.
    # rk4 with cubic interpolation: the field at a step's end, which the
    # Hermite cubic needs, is the next step's first stage.
    for method, opts, new_per_step in [
        (_bs3(True), {"step_size": 0.01}, 3),
        ("rk4", {"step_size": 0.01, "interp": "cubic"}, 4),
    ]:
        plain = torchnode.solve(field, y0, t, method=method, options=opts)
        comp = torchnode.solve(
            field, y0, t, method=method, options={**opts, "compile": True}
        )
        assert plain.stats.nfe == new_per_step * plain.stats.n_steps + 1
        assert comp.stats.nfe == plain.stats.nfe
        torch.testing.assert_close(comp.ys, plain.ys, rtol=1e-13, atol=1e-14)


def test_fields_that_split_the_graph_fall_back_with_a_warning():
    w = torch.tensor([0.7, 1.3], dtype=F64, requires_grad=True)

    def branching(t, y):
        # Python control flow on a tensor value: no single graph.
        return -y if bool(y.sum() > 0) else y.flip(-1)

    def hamiltonian(t, y):
        # Autograd inside the field: no single graph either (and compiled
        # steps could not be differentiated twice).
        with torch.enable_grad():
            energy = (w * y.square()).sum() / 2
            (g,) = torch.autograd.grad(energy, y, create_graph=True)
        return torch.stack([g[1], -g[0]])

    t = torch.tensor([0.0, 1.0], dtype=F64)
    for f in (branching, hamiltonian):
        y0 = torch.tensor([2.0, 0.5], dtype=F64, requires_grad=True)
        plain = torchnode.solve(f, y0, t, method="rk4", options={"step_size": 0.1})
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            sol = torchnode.solve(
                f, y0, t, method="rk4", options={"step_size": 0.1, "compile": 2}
            )
        messages = [str(w.message) for w in seen]
        assert any("torch.compile failed" in m for m in messages), messages
        assert seen[0].filename == __file__
        assert sol.stats.nfe == plain.stats.nfe
        torch.testing.assert_close(sol.ys, plain.ys, rtol=0, atol=0)
        got = torch.autograd.grad(sol.ys.sum(), (y0, w), allow_unused=True)
        want = torch.autograd.grad(plain.ys.sum(), (y0, w), allow_unused=True)
        for g_got, g_want in zip(got, want):
            torch.testing.assert_close(g_got, g_want, rtol=0, atol=0)


_CALLS = [0]
_A = torch.tensor(MATRIX, dtype=F64)


def _counted_in_a_global(t, y):
    # A counter in a module-level list: torch.compile guards on its value, so
    # each chunk would compile anew (a counter in a closure cell does not).
    _CALLS[0] += 1
    return y @ _A.T


def test_a_field_recompiled_for_every_chunk_stops_compiling_with_a_warning():
    y0 = torch.tensor([[2.0, 0.0]], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    opts = {"step_size": 0.01}
    f = _counted_in_a_global
    plain = torchnode.solve(f, y0, t, method="rk4", options=opts)
    _CALLS[0] = 0
    graphs = counters["stats"]["unique_graphs"]
    with pytest.warns(RuntimeWarning, match="compiled anew for chunk after chunk"):
        sol = torchnode.solve(f, y0, t, method="rk4", options={**opts, "compile": True})
    assert counters["stats"]["unique_graphs"] - graphs <= 3
    assert _CALLS[0] == sol.stats.nfe == plain.stats.nfe
    torch.testing.assert_close(sol.ys, plain.ys, rtol=1e-13, atol=1e-14)
