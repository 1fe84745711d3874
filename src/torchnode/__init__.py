"""torchnode: neural ordinary differential equations for PyTorch."""

__version__ = "0.1.0"
