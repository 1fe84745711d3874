"""Shapes, buffers, serialisation and conventions of the layers in torchnode.nn."""

import io
import math

import pytest
import torch
from torch import nn

import torchnode
from torchnode.nn import (
    AugmentedNeuralODE,
    ConvField,
    MLPField,
    NeuralODE,
    ResNet,
    SecondOrderNeuralODE,
)

MODES = ["direct", "adjoint", "checkpoint"]


class Autonomous(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim)

    def forward(self, x):
        return torch.tanh(self.lin(x))


class Oscillator(nn.Module):
    """x'' = -x on the state [x, v]."""

    def forward(self, t, z):
        return -z[..., : z.shape[-1] // 2]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("gradient", MODES)
@pytest.mark.parametrize("batch", [1, 5])
def test_vector_shapes_and_gradients(gradient, batch):
    layer = NeuralODE(MLPField(3, 8, 1), gradient=gradient)
    x = torch.randn(batch, 3, requires_grad=True)
    y = layer(x)
    assert y.shape == (batch, 3)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for p in layer.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert layer.nfe_forward > 0
    if gradient != "direct":
        assert layer.nfe_backward > 0


@pytest.mark.parametrize("gradient", MODES)
def test_image_shapes_batch_of_one(gradient):
    layer = NeuralODE(ConvField(4, 6), gradient=gradient, rtol=1e-2, atol=1e-2)
    x = torch.randn(1, 4, 5, 5)
    y = layer(x)
    assert y.shape == (1, 4, 5, 5)
    y.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_t_eval_trajectory_starts_at_t0_when_listed_and_otherwise():
    field = MLPField(2, 8, 1)
    x = torch.randn(4, 2)
    full = NeuralODE(field, t_eval=[0.0, 0.5, 1.0], rtol=1e-6, atol=1e-8)
    traj = full(x)
    assert traj.shape == (3, 4, 2)
    torch.testing.assert_close(traj[0], x)
    later = NeuralODE(field, t_eval=[0.5, 1.0], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(later(x), traj[1:], rtol=1e-5, atol=1e-6)
    end = NeuralODE(field, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(end(x), traj[-1], rtol=1e-5, atol=1e-6)


def test_backward_in_time():
    field = MLPField(2, 8, 1)
    x = torch.randn(3, 2)
    forth = NeuralODE(field, (0.0, 1.0), rtol=1e-7, atol=1e-9)
    back = NeuralODE(field, (1.0, 0.0), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(back(forth(x)), x, rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip_keeps_weights_and_tolerances():
    a = AugmentedNeuralODE(MLPField(3, 8), 1, augment="learned", t_eval=[0.0, 1.0])
    a.set_tolerances(1e-5, 1e-6)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = AugmentedNeuralODE(MLPField(3, 8), 1, augment="learned", t_eval=[0.0, 1.0])
    b.load_state_dict(torch.load(buf))
    assert set(a.state_dict()) == set(b.state_dict())
    assert {"rtol", "atol", "t_span", "t_eval"} <= set(b.state_dict())
    assert float(b.rtol) == pytest.approx(1e-5) and float(b.atol) == pytest.approx(1e-6)
    x = torch.randn(4, 2)
    torch.testing.assert_close(a(x), b(x))


def test_whole_module_pickles():
    layer = NeuralODE(MLPField(2, 8), regularizers=("kinetic",))
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    copy = torch.load(buf, weights_only=False)
    x = torch.randn(3, 2)
    torch.testing.assert_close(copy(x), layer(x))


def test_to_float64_moves_parameters_and_buffers():
    layer = NeuralODE(MLPField(2, 8), t_eval=[0.0, 0.5, 1.0]).to(torch.float64)
    assert layer.t_span.dtype == torch.float64 and layer.t_eval is not None
    assert layer.t_eval.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in layer.parameters())
    y = layer(torch.randn(3, 2, dtype=torch.float64))
    assert y.dtype == torch.float64 and y.shape == (3, 3, 2)


def test_half_keeps_tolerances_representable():
    layer = NeuralODE(MLPField(2, 8), atol=1e-9).half()
    assert layer.atol.dtype == torch.float32
    assert float(layer.atol) == pytest.approx(1e-9)
    assert next(layer.parameters()).dtype == torch.float16


def test_changing_tolerances_changes_nfe():
    layer = NeuralODE(MLPField(2, 16), rtol=1e-2, atol=1e-2)
    x = torch.randn(8, 2)
    with torch.no_grad():
        layer(x)
        loose = layer.nfe_forward
        layer.rtol.fill_(1e-7)
        layer.atol.fill_(1e-8)
        layer(x)
        tight = layer.nfe_forward
        layer.set_tolerances(1e-2, 1e-2)
        layer(x)
    assert tight > loose
    assert layer.nfe_forward == loose
    assert layer.last_stats is not None and layer.last_stats.n_accepted > 0


def test_method_and_gradient_are_checked_settable_attributes():
    layer = NeuralODE(MLPField(2, 8))
    layer.method = "rk4"
    layer.options = {"step_size": 0.25}
    layer.gradient = "checkpoint"
    with torch.no_grad():
        layer(torch.randn(2, 2))
    assert layer.nfe_forward == 16
    with pytest.raises(ValueError, match="unknown method"):
        layer.method = "dopri6"
    with pytest.raises(ValueError, match="gradient must be one of"):
        layer.gradient = "backprop"


def test_construction_errors():
    with pytest.raises(ValueError, match="t_span"):
        NeuralODE(MLPField(2), t_span=(0.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="regularizers"):
        NeuralODE(MLPField(2), regularizers=("energy",))
    with pytest.raises(ValueError, match="probe"):
        NeuralODE(MLPField(2), probe="uniform")
    with pytest.raises(ValueError, match="shared_weights"):
        ResNet(MLPField(2), 3)
    with pytest.raises(ValueError, match="in_features"):
        AugmentedNeuralODE(Autonomous(3), 1, augment="learned")


def test_autonomous_rule_and_override():
    assert NeuralODE(Autonomous(2)).autonomous
    assert not NeuralODE(MLPField(2)).autonomous
    assert NeuralODE(lambda x: -x).autonomous
    assert not NeuralODE(lambda t, x: -x).autonomous
    assert not NeuralODE(Autonomous(2), autonomous=False).autonomous
    layer = NeuralODE(Autonomous(2), rtol=1e-6, atol=1e-8)
    x = torch.randn(3, 2)
    expected = torchnode.solve(
        lambda t, y: layer.field(y), x, torch.tensor([0.0, 1.0]), rtol=1e-6, atol=1e-8
    ).ys[-1]
    torch.testing.assert_close(layer(x), expected)


def test_reset_parameters_redraws_the_field():
    layer = NeuralODE(MLPField(2, 8))
    before = [p.detach().clone() for p in layer.parameters()]
    layer.reset_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, layer.parameters()))


def test_repr_names_the_settings():
    text = repr(NeuralODE(MLPField(2, 8), method="bosh3", regularizers=("kinetic",)))
    assert "method='bosh3'" in text and "kinetic" in text and "hidden=8" in text
    assert "n_blocks=3" in repr(ResNet(lambda: MLPField(2), 3))


@pytest.mark.parametrize("gradient", MODES)
def test_augmented_vector_and_image(gradient):
    vec = AugmentedNeuralODE(MLPField(3 + 2, 8), 2, gradient=gradient)
    x = torch.randn(4, 3)
    assert vec(x).shape == (4, 3)
    vec.return_augmented = True
    full = vec(x)
    assert full.shape == (4, 5)
    img = AugmentedNeuralODE(
        ConvField(2 + 3), 3, augment="learned", gradient=gradient, rtol=1e-2, atol=1e-2
    )
    xi = torch.randn(1, 2, 4, 4)
    out = img(xi)
    assert out.shape == (1, 2, 4, 4)
    out.sum().backward()
    assert img.augment_map is not None
    assert img.augment_map.in_features == 2
    assert img.augment_map.weight.grad is not None


def test_augmented_zero_padding_is_the_plain_ode_on_the_padded_state():
    field = MLPField(3, 8)
    x = torch.randn(4, 2)
    aug = AugmentedNeuralODE(field, 1, return_augmented=True, t_eval=[0.0, 0.5, 1])
    plain = NeuralODE(field, t_eval=[0.0, 0.5, 1])
    padded = torch.cat([x, torch.zeros(4, 1)], dim=1)
    torch.testing.assert_close(aug(x), plain(padded))
    aug.return_augmented = False
    assert aug(x).shape == (3, 4, 2)
    torch.testing.assert_close(aug(x), plain(padded)[..., :2])


def test_learned_augmentation_is_a_pointwise_linear_map_on_channels():
    aug = AugmentedNeuralODE(ConvField(3 + 1), 1, augment="learned")
    assert aug.augment_map is not None
    conv = nn.Conv2d(3, 1, 1)
    conv.weight.data = aug.augment_map.weight.data.view(1, 3, 1, 1)
    conv.bias.data = aug.augment_map.bias.data
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(aug._pad(x)[:, 3:], conv(x))


@pytest.mark.parametrize("gradient", MODES)
def test_second_order_harmonic_oscillator(gradient):
    layer = SecondOrderNeuralODE(
        Oscillator(), (0.0, 2.0), rtol=1e-8, atol=1e-10, gradient=gradient
    )
    x = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    z = layer(x)
    expected = torch.cat([x * math.cos(2.0), -x * math.sin(2.0)], dim=-1)
    torch.testing.assert_close(z, expected, rtol=1e-6, atol=1e-7)
    v = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    layer.return_velocity = False
    got = layer(x, v)
    torch.testing.assert_close(
        got, x * math.cos(2.0) + v * math.sin(2.0), rtol=1e-6, atol=1e-7
    )


def test_second_order_with_mlp_field_trains():
    layer = SecondOrderNeuralODE(MLPField(4, 8, out_dim=2), t_eval=[0.0, 0.5, 1.0])
    x = torch.randn(3, 2, requires_grad=True)
    traj = layer(x)
    assert traj.shape == (3, 3, 4)
    traj.sum().backward()
    assert x.grad is not None
    bad = SecondOrderNeuralODE(MLPField(4, 8))
    with pytest.raises(ValueError, match="out_dim=D"):
        bad(torch.randn(3, 2))


def test_resnet_with_shared_block_is_the_euler_solve():
    field = MLPField(2, 8)
    x = torch.randn(5, 2)
    net = ResNet(field, 5, shared_weights=True)
    ode = NeuralODE(field, method="euler", options={"step_size": 0.2})
    torch.testing.assert_close(net(x), ode(x), rtol=1e-6, atol=1e-6)
    assert len(net.blocks) == 1


def test_resnet_blocks_factory_sequence_and_time():
    net = ResNet(lambda: MLPField(2, 8), 4)
    assert len(net.blocks) == 4 and net.step_size == 0.25
    seq = ResNet([Autonomous(2), Autonomous(2)], step_size=0.1)
    assert seq.n_blocks == 2 and seq.autonomous
    x = torch.randn(3, 2)
    b0, b1 = seq.blocks
    y = x + 0.1 * b0(x)
    torch.testing.assert_close(seq(x), y + 0.1 * b1(y))
    seen = []

    class Clock(nn.Module):
        def forward(self, t, x):
            seen.append(float(t))
            return torch.zeros_like(x)

    ResNet(Clock(), 4, shared_weights=True)(x)
    assert seen == [0.0, 0.25, 0.5, 0.75]
    convs = ResNet(lambda: ConvField(4), 2)
    assert convs(torch.randn(2, 4, 3, 3)).shape == (2, 4, 3, 3)


def test_field_factory_arguments():
    field = MLPField(2, 8, device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in field.parameters())
    conv = ConvField(3, 5, dtype=torch.float64)
    assert conv(torch.tensor(0.5), torch.randn(2, 3, 4, 4, dtype=torch.float64)).shape
    layer = NeuralODE(field, dtype=torch.float64)
    assert layer.t_span.dtype == torch.float64
    assert MLPField(2, time_dependent=False).layers[0].in_features == 2


@pytest.mark.parametrize("gradient", MODES)
def test_adjoint_backward_reaches_every_parameter_hook(gradient):
    # DDP reduces gradients from hooks that fire when a parameter's gradient is
    # accumulated; every parameter of the field must get one from backward.
    layer = NeuralODE(MLPField(2, 8), gradient=gradient)
    fired = set()
    for name, p in layer.named_parameters():
        p.register_post_accumulate_grad_hook(lambda _p, n=name: fired.add(n))
    layer(torch.randn(4, 2)).sum().backward()
    assert fired == {n for n, _ in layer.named_parameters()}
