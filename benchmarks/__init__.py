"""Benchmarks comparing torchnode with other PyTorch ODE solver libraries.

Run with ``python -m benchmarks [--quick] [--only W1,W2] [--out FILE]``.
"""
