"""Small seeded training runs: what each layer can and cannot fit."""

import math

import torch

from torchnode.nn import AugmentedNeuralODE, MLPField, NeuralODE, ResNet

X = torch.tensor([[-1.0], [1.0]])
Y = -X


def _fit(model, steps: int, lr: float) -> tuple[float, float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(X) - Y).square().mean()
        loss.backward()
        opt.step()
        if first is None:
            first = loss.item()
    with torch.no_grad():
        final = (model(X) - Y).square().mean().item()
    assert first is not None
    return first, final


def test_neural_ode_cannot_swap_two_points():
    # ODE trajectories cannot cross, so the learned map is increasing:
    # x(-1) <= x(1), and then the MSE to the targets (1, -1) is at least 1,
    # reached when both points meet at 0.
    torch.manual_seed(0)
    model = NeuralODE(MLPField(1, 16, 1), gradient="direct")
    first, final = _fit(model, steps=40, lr=5e-2)
    assert first > 2.0
    assert 0.99 <= final < 1.1


def test_augmented_neural_ode_swaps_two_points():
    torch.manual_seed(0)
    model = AugmentedNeuralODE(MLPField(2, 16, 1), 1, gradient="direct")
    first, final = _fit(model, steps=100, lr=5e-2)
    assert first > 2.0
    assert final < 1e-3


def test_resnet_swaps_two_points():
    # Euler steps of finite size can jump over each other.
    torch.manual_seed(0)
    model = ResNet(lambda: MLPField(1, 16, 1), 4)
    first, final = _fit(model, steps=200, lr=5e-2)
    assert first > 2.0
    assert final < 1e-3


def _train_map(weight: float) -> tuple[float, int, int]:
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    y = x + torch.sin(2 * x.flip(1))
    torch.manual_seed(1)
    regs = ("kinetic", "jacobian") if weight else ()
    model = NeuralODE(
        MLPField(2, 32, 2), gradient="direct", rtol=1e-4, atol=1e-4, regularizers=regs
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(100):
        opt.zero_grad()
        loss = (model(x) - y).square().mean()
        if weight:
            loss = loss + weight * sum(model.regularization.values())
        loss.backward()
        opt.step()
    model.regularizers = ()
    with torch.no_grad():
        mse = (model(x) - y).square().mean().item()
        nfe = model.nfe_forward
        model.set_tolerances(1e-6, 1e-6)
        model(x)
        nfe_tight = model.nfe_forward
    return mse, nfe, nfe_tight


def test_kinetic_and_jacobian_regularisation_makes_the_solve_cheaper():
    # Measured: plain mse 0.027, nfe 50 (98 at rtol 1e-6); regularised
    # mse 0.043, nfe 26 (50 at rtol 1e-6).
    plain_mse, plain_nfe, plain_tight = _train_map(0.0)
    reg_mse, reg_nfe, reg_tight = _train_map(0.01)
    assert math.isfinite(plain_mse) and plain_mse < 0.1
    assert reg_mse < 0.1 and reg_mse < 3 * plain_mse
    assert reg_nfe <= 0.75 * plain_nfe
    assert reg_tight <= 0.75 * plain_tight
