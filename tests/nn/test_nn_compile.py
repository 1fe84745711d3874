"""torch.compile of the vector field inside NeuralODE."""

import importlib
import time

import pytest
import torch
from torch import nn

from torchnode.nn import MLPField, NeuralODE

# Importing and tracing emit torch-internal deprecation notices and, for inputs
# that are not leaves, a warning about reading their .grad.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The .grad attribute:UserWarning"),
]


class Autonomous(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        return torch.tanh(self.lin(x))


def _compile_or_skip(module: nn.Module, backend: str):
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available in this torch build")
    try:
        dynamo = importlib.import_module("torch._dynamo")
    except Exception as err:  # pragma: no cover - platform dependent
        pytest.skip(f"torch.compile cannot run here: {err}")
    # Compiled code is cached per function; a new backend needs a fresh cache.
    dynamo.reset()
    return torch.compile(module, backend=backend)


def test_compiled_module_signature_is_read_through_the_wrapper():
    compiled = _compile_or_skip(Autonomous(), "eager")
    assert NeuralODE(compiled).autonomous
    assert not NeuralODE(_compile_or_skip(MLPField(2), "eager")).autonomous


def _run(backend: str, gradient: str) -> None:
    torch.manual_seed(0)
    field = MLPField(2, 8, 1)
    layer = NeuralODE(_compile_or_skip(field, backend), gradient=gradient)
    x = torch.randn(4, 2)
    start = time.perf_counter()
    y = layer(x)
    y.square().sum().backward()
    elapsed = time.perf_counter() - start
    if elapsed > 60:
        pytest.skip(f"compiling took {elapsed:.0f} s on this platform")
    eager = NeuralODE(field, gradient=gradient)
    grads = [p.grad.clone() for p in field.parameters()]
    field.zero_grad()
    ye = eager(x)
    ye.square().sum().backward()
    torch.testing.assert_close(y, ye, rtol=1e-5, atol=1e-6)
    for g, p in zip(grads, field.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)
    assert layer.nfe_backward > 0 or gradient == "direct"


def test_compiled_field_forward_and_backward_aot_eager():
    # Traces the field with dynamo and AOT autograd, without a C++ compiler.
    _run("aot_eager", "adjoint")


@pytest.mark.parametrize("gradient", ["adjoint", "checkpoint"])
def test_compiled_field_forward_and_backward_inductor(gradient):
    # Inductor compiles C++ for the field (about 15 s the first time).
    _run("inductor", gradient)
