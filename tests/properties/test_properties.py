"""Properties over random problems (hypothesis, derandomised for CI)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torchnode
from torchnode import SolverError
from torchnode._numerics.tableaus import ADAPTIVE_NAMES

F64 = torch.float64
PROFILE = settings(max_examples=8, deadline=None, derandomize=True)


@st.composite
def stable_systems(draw):
    n = draw(st.integers(1, 3))
    entries = draw(st.lists(st.floats(-1, 1), min_size=n * n, max_size=n * n))
    m = torch.tensor(entries, dtype=F64).reshape(n, n)
    # Shift the spectrum into the left half-plane.
    a = m - (torch.linalg.eigvals(m).real.max().item() + 0.2) * torch.eye(n, dtype=F64)
    y0 = torch.tensor(
        draw(st.lists(st.floats(-2, 2), min_size=n, max_size=n)), dtype=F64
    )
    return a, y0


@pytest.mark.parametrize("method", ["bosh3", "dopri5", "tsit5", "dopri8"])
@PROFILE
@given(system=stable_systems(), t_end=st.floats(0.1, 3.0))
def test_stable_linear_system_matches_matrix_exponential(method, system, t_end):
    a, y0 = system
    y = torchnode.odeint(
        lambda t, y: a @ y,
        y0,
        torch.tensor([0.0, t_end], dtype=F64),
        method=method,
        rtol=1e-8,
        atol=1e-8,
    )
    exact = torch.linalg.matrix_exp(a * t_end) @ y0
    assert float((y[-1] - exact).abs().max()) < 1e-5


@PROFILE
@given(system=stable_systems(), t_end=st.floats(0.1, 2.0))
def test_forward_then_back_returns_y0(system, t_end):
    a, y0 = system
    t = torch.tensor([0.0, t_end], dtype=F64)
    y1 = torchnode.odeint(lambda t, y: a @ y, y0, t, rtol=1e-10, atol=1e-10)[-1]
    back = torchnode.odeint(lambda t, y: a @ y, y1, t.flip(0), rtol=1e-10, atol=1e-10)
    assert float((back[-1] - y0).abs().max()) < 1e-6


@PROFILE
@given(system=stable_systems(), split=st.floats(0.1, 0.9))
def test_splitting_at_an_output_time_changes_nothing(system, split):
    a, y0 = system
    whole = torchnode.odeint(
        lambda t, y: a @ y,
        y0,
        torch.tensor([0.0, 1.0], dtype=F64),
        rtol=1e-10,
        atol=1e-10,
    )[-1]
    mid = torchnode.odeint(
        lambda t, y: a @ y,
        y0,
        torch.tensor([0.0, split], dtype=F64),
        rtol=1e-10,
        atol=1e-10,
    )[-1]
    rest = torchnode.odeint(
        lambda t, y: a @ y,
        mid,
        torch.tensor([split, 1.0], dtype=F64),
        rtol=1e-10,
        atol=1e-10,
    )[-1]
    assert float((whole - rest).abs().max()) < 1e-7


@pytest.mark.parametrize("mode", ["direct", "adjoint", "checkpoint"])
@settings(max_examples=4, deadline=None, derandomize=True)
@given(k=st.floats(-1.0, 1.0), y0=st.floats(-2.0, 2.0))
def test_gradient_matches_finite_difference(mode, k, y0):
    def loss(kk):
        sol = torchnode.solve(
            lambda t, y: kk * y - 0.3 * y**3,
            torch.tensor([y0], dtype=F64),
            torch.tensor([0.0, 1.0], dtype=F64),
            rtol=1e-11,
            atol=1e-11,
            gradient=mode,
            adjoint_rtol=1e-11,
            adjoint_atol=1e-11,
        )
        return sol.ys[-1].sum()

    kk = torch.tensor(k, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(loss(kk), kk)
    h = 1e-5
    with torch.no_grad():
        fd = loss(torch.tensor(k + h, dtype=F64)) - loss(torch.tensor(k - h, dtype=F64))
    assert float(g) == pytest.approx(float(fd) / (2 * h), abs=1e-6)


BAD_T = st.one_of(
    st.lists(
        st.one_of(st.floats(-100, 100), st.sampled_from([math.nan, math.inf])),
        max_size=4,
    ).map(lambda v: torch.tensor(v, dtype=F64)),
    st.lists(st.integers(-3, 3), min_size=1, max_size=4).map(torch.tensor),
    st.just(torch.zeros(2, 2, dtype=F64)),
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    t=BAD_T,
    y0=st.lists(st.floats(allow_nan=True), max_size=3),
    method=st.sampled_from([*sorted(ADAPTIVE_NAMES), "rk4", "nope"]),
)
def test_malformed_input_raises_only_named_errors(t, y0, method):
    y = torch.tensor(y0, dtype=F64)
    try:
        torchnode.odeint(
            lambda t, y: -y,
            y,
            t,
            method=method,
            options={"step_size": 0.1} if method == "rk4" else None,
        )
    except (ValueError, TypeError) as err:
        assert any(w in str(err) for w in ("t ", "t[", "y0", "method", "times"))
    except SolverError as err:
        assert f"t = {err.t!r}" in str(err)
