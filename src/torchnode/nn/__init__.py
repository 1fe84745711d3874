"""Neural network layers built on the solver: neural ODEs, their augmented and
second-order forms, residual networks as their Euler discretisation, and ready
vector fields."""

from .fields import ConcatConv2d, ConcatLinear, ConvField, MLPField
from .ode import AugmentedNeuralODE, NeuralODE, SecondOrderNeuralODE
from .resnet import ResNet

__all__ = [
    "AugmentedNeuralODE",
    "ConcatConv2d",
    "ConcatLinear",
    "ConvField",
    "MLPField",
    "NeuralODE",
    "ResNet",
    "SecondOrderNeuralODE",
]
