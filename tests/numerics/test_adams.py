"""Measured convergence orders and option checks of the fixed-grid Adams methods."""

import numpy as np
import pytest
import torch

import torchnode

A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)
Y0_2D = torch.tensor([1.0, 0.5], dtype=torch.float64)
T_END = 2.0
STEPS = [0.1, 0.05, 0.025, 0.0125]


def _decay(t, y):
    return -y


def _linear(t, y):
    return y @ A.T


PROBLEMS = {
    "decay": (
        _decay,
        torch.tensor([1.0], dtype=torch.float64),
        lambda: torch.exp(torch.tensor([-T_END], dtype=torch.float64)),
    ),
    "linear2d": (_linear, Y0_2D, lambda: torch.linalg.matrix_exp(A * T_END) @ Y0_2D),
}


def _slope(method: str, problem: str, order: int) -> float:
    func, y0, exact = PROBLEMS[problem]
    t = torch.tensor([0.0, T_END], dtype=torch.float64)
    errs = []
    for h in STEPS:
        # Tight tolerances: the corrector stops once its updates are within them.
        ys = torchnode.odeint(
            func,
            y0,
            t,
            method=method,
            rtol=1e-13,
            atol=1e-15,
            options={"step_size": h, "max_order": order},
        )
        errs.append(float((ys[-1] - exact()).abs().max()))
    return float(np.polyfit(np.log(STEPS), np.log(errs), 1)[0])


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
def test_convergence_order(method, order, problem):
    assert abs(_slope(method, problem, order) - order) < 0.2


def test_fixed_adams_is_implicit_adams():
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    y0 = torch.tensor([1.0], dtype=torch.float64)
    a = torchnode.odeint(
        _decay, y0, t, method="fixed_adams", options={"step_size": 0.1}
    )
    b = torchnode.odeint(
        _decay, y0, t, method="implicit_adams", options={"step_size": 0.1}
    )
    assert torch.equal(a, b)


def test_outputs_between_grid_nodes_keep_the_order():
    # Output times off the step grid are merged into it (a non-uniform grid).
    t = torch.tensor([0.0, 0.333, 1.0], dtype=torch.float64)
    y0 = torch.tensor([1.0], dtype=torch.float64)
    ys = torchnode.odeint(
        _decay, y0, t, method="implicit_adams", options={"step_size": 0.01}
    )
    assert torch.allclose(ys[:, 0], torch.exp(-t), atol=1e-9)


def test_direct_and_adjoint_gradients_agree():
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    opts = {"step_size": 0.01}
    a = torchnode.odeint(_linear, y0, t, method="implicit_adams", options=opts)
    (ga,) = torch.autograd.grad(a[-1].sum(), y0)
    b = torchnode.odeint_adjoint(_linear, y0, t, method="implicit_adams", options=opts)
    (gb,) = torch.autograd.grad(b[-1].sum(), y0)
    exact = torch.linalg.matrix_exp(A).sum(0)
    assert torch.allclose(ga, exact, atol=1e-7)
    assert torch.allclose(gb, exact, atol=1e-7)


def test_checkpoint_gradient_is_refused():
    y0 = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"checkpoint.*'direct' or 'adjoint'"):
        torchnode.solve(
            _decay,
            y0,
            t,
            method="explicit_adams",
            options={"step_size": 0.1},
            gradient="checkpoint",
        )


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_order": 0}, ValueError, "max_order.*from 1 to 12, but got 0"),
        ({"max_order": 13}, ValueError, "but got 13"),
        ({"max_order": 2.5}, TypeError, "max_order"),
        ({"max_iters": 0}, ValueError, "max_iters.*at least 1"),
        ({"interp": "quintic"}, ValueError, "interp"),
        ({"step_size": -1.0}, ValueError, "step_size"),
        ({"max_ordr": 3}, ValueError, "did you mean 'max_order'"),
    ],
)
def test_options_validation(options, error, match):
    y0 = torch.tensor([1.0], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(error, match=match):
        torchnode.odeint(_decay, y0, t, method="implicit_adams", options=options)


def test_methods_are_registered():
    names = torchnode.methods()
    assert {"explicit_adams", "implicit_adams", "fixed_adams"} <= set(names)
