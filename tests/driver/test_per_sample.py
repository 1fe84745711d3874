"""Per-sample adaptive stepping: each sample with its own time and step size."""

from __future__ import annotations

import math

import pytest
import torch

import torchnode
from torchnode import SolverError

F64 = torch.float64


def _decay(k: torch.Tensor):
    def f(t, y):
        return -k * y

    return f


def test_b30_two_decays_on_their_own_grids():
    k = torch.tensor([1.0, 2.0], dtype=F64)
    t = torch.tensor([[0.0, 0.2, 0.4, 0.6], [0.0, 0.1, 0.5, 0.9]], dtype=F64)
    sol = torchnode.solve(_decay(k), torch.ones(2, dtype=F64), t)
    expected = torch.tensor(
        [
            [1.0, 0.8187307530779818, 0.6703200460356393, 0.5488116360940264],
            [1.0, 0.8187307530779818, 0.36787944117144233, 0.16529888822158653],
        ],
        dtype=F64,
    )
    assert sol.ys.shape == (2, 4)
    torch.testing.assert_close(sol.ys, expected, rtol=0, atol=1e-6)
    for name in ("n_steps", "n_accepted", "n_rejected"):
        value = sol.stats[name]
        assert isinstance(value, torch.Tensor)
        assert value.shape == (2,) and value.dtype == torch.int64
    assert isinstance(sol.stats.nfe, int)
    assert torch.equal(sol.stats.n_steps, sol.stats.n_accepted + sol.stats.n_rejected)


def test_field_gets_per_sample_time_tensor():
    seen = []

    def f(t, y):
        seen.append(t)
        return -y

    t = torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]], dtype=F64)
    torchnode.solve(f, torch.ones(3, 2, dtype=F64), t)
    assert all(s.shape == (3,) and s.dtype == F64 for s in seen)
    # Finished samples are frozen at their end time.
    assert seen[-1][0].item() == 1.0 and seen[-1][1].item() == 2.0


def test_wide_spans():
    t = torch.tensor([[0.0, 0.001], [0.0, 100.0], [0.0, 1.0]], dtype=F64)
    y0 = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    sol = torchnode.solve(lambda t, y: -y, y0, t)
    ys = sol.ys[:, -1]
    assert ys[0].item() == pytest.approx(0.9990004998, abs=1e-9)
    assert abs(ys[1].item()) < 1e-8
    assert ys[2].item() == pytest.approx(1.1036383235, rel=1e-7)
    assert sol.stats.n_steps[0] < sol.stats.n_steps[2] < sol.stats.n_steps[1]


def test_fast_and_slow_samples_meet_tolerance_with_fewer_slow_steps():
    # Sample 0: a stiff-ish oscillator y'' = -2500 y (k = 50); samples 1, 2 slow.
    w = torch.tensor([50.0, 0.5, 0.2], dtype=F64)

    def f(t, y):
        x, v = y[:, 0], y[:, 1]
        return torch.stack([w * v, -w * x], dim=1)

    y0 = torch.tensor([[1.0, 0.0]] * 3, dtype=F64)
    t = torch.linspace(0, 1, 5, dtype=F64)
    rtol, atol = 1e-7, 1e-9
    sol = torchnode.solve(f, y0, t, per_sample=True, rtol=rtol, atol=atol)
    exact = torch.stack([torch.cos(w[:, None] * t), -torch.sin(w[:, None] * t)], dim=-1)
    assert sol.ys.shape == (3, 5, 2)
    torch.testing.assert_close(sol.ys, exact, rtol=0, atol=1e-6)
    shared = torchnode.solve(f, y0, t, rtol=rtol, atol=atol)
    torch.testing.assert_close(shared.ys.transpose(0, 1), exact, rtol=0, atol=1e-6)
    steps = sol.stats.n_steps
    assert int(steps[0]) > 10 * int(steps[1])
    # The shared solve takes every step of the fast sample for all samples.
    assert shared.stats.n_steps >= 10 * int(steps[1])
    assert shared.stats.n_steps >= 10 * int(steps[2])


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "dopri8"])
def test_matches_solving_each_sample_alone(method):
    torch.manual_seed(0)
    mags = torch.tensor([0.3, 1.0, 3.0], dtype=F64)[:, None, None]
    a = torch.randn(3, 3, 3, dtype=F64) * mags
    y0 = torch.randn(3, 3, dtype=F64)
    t = torch.tensor([[0.0, 0.3, 1.0], [0.0, 1.0, 2.0], [0.0, -0.2, -0.5]], dtype=F64)

    def f(tt, y):
        return torch.einsum("bij,bj->bi", a, y) * torch.cos(tt)[:, None]

    # Tight tolerances: the two solves take different steps (a per-sample solve
    # lands on every output time, the shared loop interpolates), so they agree
    # only to the size of the error each one leaves.
    tol = {"rtol": 1e-10, "atol": 1e-12}
    sol = torchnode.solve(f, y0, t, method=method, **tol)
    for b in range(3):

        def g(tt, y, b=b):
            return a[b] @ y * torch.cos(tt)

        ref = torchnode.solve(g, y0[b], t[b], method=method, **tol)
        torch.testing.assert_close(sol.ys[b], ref.ys, rtol=1e-8, atol=1e-10)


def test_same_steps_as_the_shared_solver_on_one_sample():
    # With only start and end times, each sample's step sequence is the one the
    # shared solver takes on that sample alone.
    k = torch.tensor([0.5, 3.0, 20.0], dtype=F64)
    t = torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 0.7]], dtype=F64)
    y0 = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    sol = torchnode.solve(lambda tt, y: -k * y + torch.sin(tt), y0, t)
    for b in range(3):
        ref = torchnode.solve(lambda tt, y, b=b: -k[b] * y + torch.sin(tt), y0[b], t[b])
        assert int(sol.stats.n_accepted[b]) == ref.stats.n_accepted
        assert int(sol.stats.n_rejected[b]) == ref.stats.n_rejected
        torch.testing.assert_close(sol.ys[b, -1], ref.ys[-1], rtol=1e-12, atol=0)


def test_repeated_and_shared_one_dimensional_times():
    t = torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0], dtype=F64)
    k = torch.tensor([1.0, 4.0], dtype=F64)
    sol = torchnode.solve(_decay(k), torch.ones(2, dtype=F64), t, per_sample=True)
    torch.testing.assert_close(sol.ys, torch.exp(-k[:, None] * t), rtol=1e-6, atol=1e-9)


def test_direct_gradient_matches_finite_differences():
    t = torch.tensor([[0.0, 0.4, 1.0], [0.0, 0.25, 0.8]], dtype=F64)
    w = torch.tensor([[0.0, 1.5], [-2.0, -0.3]], dtype=F64, requires_grad=True)

    def run(y0, w):
        def f(tt, y):
            return torch.tanh(y @ w.T) * (1 + tt[:, None])

        ys = torchnode.solve(f, y0, t, rtol=1e-10, atol=1e-11).ys
        return (ys[:, -1] * torch.tensor([1.0, -2.0], dtype=F64)).sum() + ys[:, 1].pow(
            2
        ).sum()

    y0 = torch.tensor([[0.3, -0.7], [1.1, 0.4]], dtype=F64, requires_grad=True)
    loss = run(y0, w)
    g_y0, g_w = torch.autograd.grad(loss, (y0, w))
    eps = 1e-6
    for x, g in ((y0, g_y0), (w, g_w)):
        fd = torch.zeros_like(x)
        for i in range(x.numel()):
            e = torch.zeros_like(x).view(-1)
            e[i] = eps
            e = e.view_as(x)
            with torch.no_grad():
                args_p = (y0 + e, w) if x is y0 else (y0, w + e)
                args_m = (y0 - e, w) if x is y0 else (y0, w - e)
                fd.view(-1)[i] = (run(*args_p) - run(*args_m)) / (2 * eps)
        torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-7)


def test_float32_state_and_time():
    k = torch.tensor([1.0, 2.0])
    t = torch.tensor([[0.0, 0.5], [0.0, 1.0]])
    sol = torchnode.solve(_decay(k), torch.ones(2), t, rtol=1e-5, atol=1e-7)
    assert sol.ys.dtype == torch.float32
    torch.testing.assert_close(
        sol.ys[:, -1],
        torch.tensor([math.exp(-0.5), math.exp(-2.0)]),
        atol=1e-5,
        rtol=0,
    )


def test_max_num_steps_names_the_sample():
    k = torch.tensor([1.0, 1000.0], dtype=F64)
    t = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=F64)
    with pytest.raises(SolverError, match="sample 1") as info:
        torchnode.solve(
            _decay(k), torch.ones(2, dtype=F64), t, options={"max_num_steps": 50}
        )
    assert info.value.reason == "max_num_steps"


def test_underflow_names_the_sample():
    def f(tt, y):
        # Sample 1 blows up at t = 1: y' = y^2 from y(0) = 1.
        return torch.stack([-y[0], y[1] ** 2])

    t = torch.tensor([[0.0, 2.0], [0.0, 2.0]], dtype=F64)
    with pytest.raises(SolverError, match="sample 1"):
        torchnode.solve(f, torch.ones(2, dtype=F64), t)


@pytest.mark.parametrize("gradient", ["adjoint", "checkpoint"])
def test_other_gradient_modes_are_refused(gradient):
    t = torch.tensor([[0.0, 1.0]], dtype=F64)
    y0 = torch.ones(1, 2, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="not implemented for per-sample"):
        torchnode.solve(lambda tt, y: -y, y0, t, gradient=gradient)


def test_bad_inputs():
    y0 = torch.ones(2, dtype=F64)
    with pytest.raises(ValueError, match="batch"):
        torchnode.solve(lambda tt, y: -y, y0, torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="monotonic"):
        t = torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 0.5]], dtype=F64)
        torchnode.solve(lambda tt, y: -y, y0, t)
    with pytest.raises(ValueError, match="adaptive"):
        t = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=F64)
        torchnode.solve(lambda tt, y: -y, y0, t, method="rk4")
