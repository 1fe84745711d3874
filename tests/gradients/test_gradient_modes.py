"""Gradients in every mode: against finite differences, against each other, and
the backward pass's cost."""

import math

import pytest
import torch

import torchnode

F64 = torch.float64
MODES = ["direct", "adjoint", "checkpoint"]
A = torch.tensor([[-0.4, 1.0], [-1.0, -0.2]], dtype=F64)


def _solve_fn(mode: str):
    def fn(y0, k, t):
        sol = torchnode.solve(
            lambda t, y: k * (A @ y) + torch.sin(t) * y[:1].expand(2) * 0.1,
            y0,
            t,
            rtol=1e-12,
            atol=1e-12,
            gradient=mode,
            adjoint_rtol=1e-12,
            adjoint_atol=1e-12,
        )
        return sol.ys

    return fn


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_wrt_y0_parameter_and_times(mode):
    y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
    k = torch.tensor(0.8, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=F64, requires_grad=True)
    # The adjoint and the time gradients are those of the exact flow: they
    # match finite differences to the solve's tolerance, not to round-off.
    assert torch.autograd.gradcheck(
        _solve_fn(mode), (y0, k, t), eps=1e-6, atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3"])
def test_checkpoint_gradient_equals_direct_on_an_adaptive_solve(method):
    grads = {}
    for mode in ("direct", "checkpoint"):
        y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
        k = torch.tensor(0.8, dtype=F64, requires_grad=True)
        sol = torchnode.solve(
            lambda t, y, k=k: k * (A @ y) - y**3,
            y0,
            torch.tensor([0.0, 0.3, 0.9, 2.0], dtype=F64),
            method=method,
            rtol=1e-6,
            atol=1e-8,
            gradient=mode,
        )
        (sol.ys**2).sum().backward()
        grads[mode] = torch.cat([y0.grad, k.grad.reshape(1)])
    torch.testing.assert_close(grads["checkpoint"], grads["direct"], rtol=0, atol=1e-12)


def _adjoint_vs_direct(tol: float) -> float:
    out = {}
    for mode in ("direct", "adjoint"):
        k = torch.tensor(0.8, dtype=F64, requires_grad=True)
        y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
        sol = torchnode.solve(
            lambda t, y, k=k: k * (A @ y) - y**3,
            y0,
            torch.tensor([0.0, 1.0, 3.0], dtype=F64),
            rtol=1e-10,
            atol=1e-10,
            gradient=mode,
            adjoint_rtol=tol,
            adjoint_atol=tol,
        )
        sol.ys.sum().backward()
        out[mode] = torch.cat([y0.grad, k.grad.reshape(1)])
    return float((out["adjoint"] - out["direct"]).abs().max())


def test_adjoint_approaches_direct_as_its_tolerance_tightens():
    errors = [_adjoint_vs_direct(tol) for tol in (1e-4, 1e-6, 1e-8)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[0] < 1e-2 and errors[2] < 1e-6


def test_seminorm_costs_fewer_backward_evaluations_with_the_same_gradient():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)
    ).double()
    y0 = torch.randn(8, 4, dtype=F64)
    results = {}
    for norm in (None, "seminorm"):
        net.zero_grad()
        sol = torchnode.solve(
            lambda t, y: net(y),
            y0,
            torch.tensor([0.0, 2.0], dtype=F64),
            rtol=1e-6,
            atol=1e-8,
            gradient="adjoint",
            adjoint_options=None if norm is None else {"norm": norm},
        )
        sol.ys[-1].pow(2).sum().backward()
        grad = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
        results[norm] = (sol.stats.nfe_backward, grad)
    assert results["seminorm"][0] < results[None][0]
    torch.testing.assert_close(
        results["seminorm"][1], results[None][1], rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("mode", ["adjoint", "checkpoint"])
def test_backward_counters_are_filled_after_backward(mode):
    k = torch.tensor(0.5, dtype=F64, requires_grad=True)
    sol = torchnode.solve(
        lambda t, y: -k * y,
        torch.ones(1, dtype=F64),
        torch.tensor([0.0, 1.0], dtype=F64),
        gradient=mode,
    )
    assert sol.stats.nfe_backward == 0 and sol.stats.n_steps_backward == 0
    sol.ys[-1].sum().backward()
    assert sol.stats.nfe_backward > 0 and sol.stats.n_steps_backward > 0
    if mode == "checkpoint":
        assert sol.stats.n_steps_backward == sol.stats.n_accepted
    assert float(k.grad) == pytest.approx(-math.exp(-0.5), rel=1e-6)


@pytest.mark.parametrize("mode", ["adjoint", "checkpoint"])
@pytest.mark.parametrize(
    ("method", "options"),
    [("dopri5", None), ("rk4", {"step_size": 0.1}), ("explicit_adams", None)],
)
def test_finding_the_parameters_costs_no_field_evaluation(mode, method, options):
    # The evaluation whose graph shows the field's tensors is the solve's first
    # one, so the forward pass calls the field exactly as often as 'direct'.
    if mode == "checkpoint" and method == "explicit_adams":
        pytest.skip("a multistep method cannot be checkpointed")
    k = torch.tensor(0.5, dtype=F64, requires_grad=True)
    calls = {}
    for m in ("direct", mode):
        count = [0]

        def field(t, y, count=count):
            count[0] += 1
            return -k * y + torch.cos(t)

        sol = torchnode.solve(
            field,
            torch.ones(3, dtype=F64),
            torch.tensor([0.0, 0.5, 1.0], dtype=F64),
            method=method,
            options=options,
            gradient=m,
        )
        assert sol.stats.nfe == count[0]
        calls[m] = count[0]
        sol.ys.sum().backward()
    assert calls[mode] == calls["direct"]
