"""Gradients of NeuralODE in every mode, and the regularisers' values."""

import math

import numpy as np
import pytest
import torch
from scipy.linalg import expm, solve_continuous_lyapunov
from torch import nn

from torchnode.nn import ConvField, MLPField, NeuralODE

MODES = ["direct", "adjoint", "checkpoint"]


class Linear(nn.Module):
    """f(t, x) = A x."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, t, x):
        return x @ self.a.T


def _value(t: torch.Tensor) -> float:
    return t.detach().item()


def _grads(gradient, rtol, atol, regularizers=(), seed=0):
    torch.manual_seed(0)
    field = MLPField(2, 6, 1, dtype=torch.float64)
    layer = NeuralODE(
        field,
        (0.0, 1.5),
        gradient=gradient,
        rtol=rtol,
        atol=atol,
        regularizers=regularizers,
        dtype=torch.float64,
    )
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(seed)
    y = layer(x)
    loss = y.square().sum() + sum(layer.regularization.values())
    loss.backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    return torch.cat([g.reshape(-1) for g in [x.grad, *grads]]), layer


def test_checkpoint_gradient_equals_direct():
    direct, _ = _grads("direct", 1e-6, 1e-8)
    ckpt, layer = _grads("checkpoint", 1e-6, 1e-8)
    torch.testing.assert_close(ckpt, direct, rtol=1e-10, atol=1e-10)
    assert layer.nfe_backward > 0


def test_adjoint_gradient_matches_direct_at_tight_tolerances():
    direct, _ = _grads("direct", 1e-10, 1e-12)
    adjoint, layer = _grads("adjoint", 1e-10, 1e-12)
    torch.testing.assert_close(adjoint, direct, rtol=1e-6, atol=1e-8)
    assert layer.nfe_backward > 0
    assert layer.last_stats is not None
    assert layer.last_stats.n_steps_backward > 0


@pytest.mark.parametrize("regs", [("kinetic",), ("jacobian",), ("kinetic", "jacobian")])
def test_regularised_gradients_agree_across_modes(regs):
    direct, _ = _grads("direct", 1e-9, 1e-11, regs, seed=3)
    ckpt, _ = _grads("checkpoint", 1e-9, 1e-11, regs, seed=3)
    adjoint, _ = _grads("adjoint", 1e-9, 1e-11, regs, seed=3)
    torch.testing.assert_close(ckpt, direct, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(adjoint, direct, rtol=1e-5, atol=1e-7)


def _kinetic_exact(a: np.ndarray, x0: np.ndarray, t: float) -> np.ndarray:
    """Per-sample integral of |A x(s)|^2 over [0, t] for x' = A x.

    With W = int_0^t e^{A's} A'A e^{As} ds the integral is x0' W x0, and W
    solves the Lyapunov equation A'W + WA = e^{A't} A'A e^{At} - A'A.
    """
    q = a.T @ a
    e = expm(a * t)
    w = solve_continuous_lyapunov(a.T, e.T @ q @ e - q)
    return np.einsum("bi,ij,bj->b", x0, w, x0)


A = torch.tensor([[-0.5, 1.2], [-0.8, -0.3]], dtype=torch.float64)


@pytest.mark.parametrize("gradient", MODES)
def test_kinetic_integral_of_a_linear_field_is_exact(gradient):
    layer = NeuralODE(
        Linear(A),
        (0.0, 1.5),
        gradient=gradient,
        rtol=1e-10,
        atol=1e-12,
        regularizers=("kinetic", "jacobian"),
        dtype=torch.float64,
    )
    x = torch.tensor([[1.0, 0.0], [0.3, -2.0], [0.5, 0.5]], dtype=torch.float64)
    layer(x)
    exact = _kinetic_exact(A.numpy(), x.numpy(), 1.5).mean()
    assert _value(layer.regularization["kinetic"]) == pytest.approx(exact, rel=1e-8)


def test_jacobian_term_of_a_linear_field_is_the_probe_estimate():
    layer = NeuralODE(
        Linear(A),
        (0.0, 1.5),
        rtol=1e-8,
        atol=1e-10,
        regularizers=("jacobian",),
        dtype=torch.float64,
    )
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.manual_seed(7)
    probe = torch.randn_like(x)
    torch.manual_seed(7)
    layer(x)
    # e' A does not change along the solve: the integral is T |A' e|^2.
    expected = 1.5 * (probe @ A).square().sum(1).mean()
    assert _value(layer.regularization["jacobian"]) == pytest.approx(float(expected))


def test_rademacher_probe_is_exact_for_a_scaled_rotation():
    w = 0.7
    rot = w * torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    layer = NeuralODE(
        Linear(rot),
        (0.0, 2.0),
        regularizers=("kinetic", "jacobian"),
        probe="rademacher",
        dtype=torch.float64,
        # The integrals are carried outside the error norm: a tight tolerance
        # on the state keeps the kinetic one accurate too.
        rtol=1e-8,
        atol=1e-10,
    )
    x = torch.randn(6, 2, dtype=torch.float64)
    layer(x)
    # |e' A|^2 = w^2 |e|^2 = 2 w^2 for a Rademacher e in two dimensions, and
    # |A x|^2 = w^2 |x0|^2 along the circular orbits.
    assert _value(layer.regularization["jacobian"]) == pytest.approx(2 * w * w * 2.0)
    kinetic = w * w * x.square().sum(1).mean() * 2.0
    assert _value(layer.regularization["kinetic"]) == pytest.approx(
        float(kinetic), rel=1e-6
    )


def test_regularisers_do_not_change_the_steps_or_the_solution():
    torch.manual_seed(0)
    field = MLPField(2, 8)
    x = torch.randn(6, 2)
    plain = NeuralODE(field, rtol=1e-5, atol=1e-6)
    reg = NeuralODE(field, rtol=1e-5, atol=1e-6, regularizers=("kinetic", "jacobian"))
    torch.testing.assert_close(reg(x), plain(x))
    assert reg.nfe_forward == plain.nfe_forward
    assert set(reg.regularization) == {"kinetic", "jacobian"}
    assert plain.regularization == {}


def test_regularisers_on_images_with_t_eval():
    torch.manual_seed(0)
    layer = NeuralODE(
        ConvField(2),
        t_eval=[0.5, 1.0],
        gradient="checkpoint",
        rtol=1e-2,
        atol=1e-2,
        regularizers=("kinetic", "jacobian"),
        probe="rademacher",
    )
    x = torch.randn(2, 2, 3, 3)
    traj = layer(x)
    assert traj.shape == (2, 2, 2, 3, 3)
    reg = layer.regularization
    assert reg["kinetic"].shape == () and _value(reg["kinetic"]) > 0
    assert _value(reg["jacobian"]) > 0
    (traj.sum() + reg["kinetic"] + reg["jacobian"]).backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_regularisers_under_no_grad_give_detached_values():
    layer = NeuralODE(MLPField(2, 8), regularizers=("kinetic", "jacobian"))
    with torch.no_grad():
        y = layer(torch.randn(3, 2))
    assert not y.requires_grad
    assert all(not v.requires_grad for v in layer.regularization.values())
    assert math.isfinite(_value(layer.regularization["jacobian"]))
