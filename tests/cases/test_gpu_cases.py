"""Field cases that need a CUDA device; skipped with the reason elsewhere."""

from __future__ import annotations

import pytest
import torch

import torchnode
from torchnode.nn import NeuralODE

cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="B31 needs a CUDA device"
)


def _field() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    )


@cuda
def test_B31_t_on_another_device_than_y0_names_both_devices():
    y0 = torch.randn(10, 1, device="cuda")
    t = torch.linspace(0, 1, 100)
    with pytest.raises(ValueError, match=r"cuda.*cpu|cpu.*cuda"):
        torchnode.odeint_adjoint(lambda t, y: -y, y0, t, adjoint_params=())


@cuda
def test_B31_layer_moved_to_cuda_matches_cpu_float64_with_adjoint():
    x = torch.randn(10, 1, generator=torch.Generator().manual_seed(1))
    grads = {}
    losses = {}
    for device, dtype in (("cpu", torch.float64), ("cuda", torch.float32)):
        layer = NeuralODE(_field(), t_span=(0.0, 1.0), gradient="adjoint")
        layer = layer.to(device=device, dtype=dtype)
        loss = layer(x.to(device=device, dtype=dtype)).abs().mean()
        loss.backward()
        losses[device] = float(loss)
        for p in layer.parameters():
            assert p.grad is not None and p.grad.device.type == device
        grads[device] = [p.grad.double().cpu() for p in layer.parameters()]
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-5)
    for a, b in zip(grads["cpu"], grads["cuda"]):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
