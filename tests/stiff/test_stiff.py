"""Implicit methods: convergence orders, stiff benchmarks, float32 method of
lines, Newton failures and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from stiff_problems import HIRES_END, ROBERTSON_1E5, hires, robertson, van_der_pol

import torchnode
from torchnode import SolverError, solve

FIXED = {
    "implicit_euler": 1,
    "implicit_midpoint": 2,
    "trapezoid": 2,
    "sdirk2": 2,
    "trbdf2": 2,
    "radauIIA3": 3,
    "gl4": 4,
    "radauIIA5": 5,
    "gl6": 6,
}

# A mildly stiff, non-normal linear system: eigenvalues -1 and -20.
_A = torch.tensor([[-1.0, 3.0], [0.0, -20.0]], dtype=torch.float64)
_Y0 = torch.tensor([1.0, 1.0], dtype=torch.float64)


def _linear(t, y):
    return _A @ y


@pytest.mark.parametrize("method", sorted(FIXED))
def test_fixed_grid_convergence_order(method):
    order = FIXED[method]
    exact = torch.linalg.matrix_exp(_A) @ _Y0
    # Coarse enough that the error stays far above rounding for high orders.
    ns = [8, 16, 32] if order >= 5 else [16, 32, 64]
    errs = []
    for n in ns:
        sol = solve(
            _linear,
            _Y0,
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            method=method,
            options={"step_size": 1.0 / n},
            rtol=1e-12,
            atol=1e-14,
        )
        errs.append(float((sol.ys[-1] - exact).norm()))
        assert sol.stats.n_jac >= 1 and sol.stats.n_lu >= 1
    slope = np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert abs(-slope - order) < 0.3, (method, errs, slope)


def testrobertson_kvaerno5():
    ref = torch.tensor(ROBERTSON_1E5, dtype=torch.float64)
    sol = solve(
        robertson,
        torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
        torch.tensor([0.0, 1e5], dtype=torch.float64),
        method="kvaerno5",
        rtol=1e-6,
        atol=1e-10,
    )
    rel = ((sol.ys[-1] - ref) / ref).abs()
    assert bool((rel < 1e-4).all()), rel
    # Measured: 74 steps (72 accepted), 1412 evaluations, 24 Jacobians; the
    # bounds are x1.5.
    assert sol.stats.n_steps <= 111, sol.stats
    assert sol.stats.nfe <= 2118, sol.stats
    assert sol.stats.n_jac <= 36, sol.stats
    assert sol.stats.n_lu >= sol.stats.n_accepted


def test_van_der_pol_stiff():
    vdp = van_der_pol(1000.0)
    # scipy Radau, rtol = atol = 1e-10, analytic Jacobian.
    ref = torch.tensor([-1.510606936783977, 0.0011783800006507097], dtype=torch.float64)
    sol = solve(
        vdp,
        torch.tensor([2.0, 0.0], dtype=torch.float64),
        torch.tensor([0.0, 3000.0], dtype=torch.float64),
        method="kvaerno5",
        rtol=1e-6,
        atol=1e-8,
    )
    rel = ((sol.ys[-1] - ref) / ref).abs()
    assert bool((rel < 1e-4).all()), rel
    # Measured: 658 steps; an explicit method would need ~1e6.
    assert sol.stats.n_steps <= 987, sol.stats


def testhires():
    ref = torch.tensor(HIRES_END, dtype=torch.float64)
    y0 = torch.tensor([1, 0, 0, 0, 0, 0, 0, 0.0057], dtype=torch.float64)
    t = torch.tensor([0.0, 321.8122], dtype=torch.float64)
    sol = solve(hires, y0, t, method="kvaerno5", rtol=1e-6, atol=1e-8)
    rel = ((sol.ys[-1] - ref) / ref).abs()
    assert bool((rel < 1e-4).all()), rel
    fixed = solve(hires, y0, t, method="radauIIA5", options={"step_size": 0.5})
    rel = ((fixed.ys[-1] - ref) / ref).abs()
    assert bool((rel < 1e-2).all()), rel


def _heat(n: int = 50):
    dx = 1.0 / (n + 1)
    x = torch.arange(1, n + 1, dtype=torch.float32) * dx
    # The discrete Laplacian's sine mode decays at exactly this rate.
    lam = 4.0 / dx**2 * math.sin(math.pi * dx / 2) ** 2

    def heat(t, u):
        padded = torch.nn.functional.pad(u, (1, 1))
        return (padded[2:] - 2 * u + padded[:-2]) / dx**2

    return heat, torch.sin(math.pi * x), lam


@pytest.mark.parametrize(
    ("method", "options", "tol"),
    [("implicit_euler", {"step_size": 1e-3}, 1e-2), ("kvaerno5", {}, 1e-4)],
)
def test_heat_equation_float32(method, options, tol):
    heat, u0, lam = _heat()
    t = torch.tensor([0.0, 0.05, 0.1], dtype=torch.float32)
    sol = solve(heat, u0, t, method=method, options=options, rtol=1e-5, atol=1e-7)
    assert sol.ys.dtype == torch.float32
    for i in (1, 2):
        exact = u0 * math.exp(-lam * float(t[i]))
        rel = float((sol.ys[i] - exact).abs().max() / exact.abs().max())
        assert rel < tol, (method, i, rel)
    # Stiff: the largest eigenvalue is ~1e4, an explicit method would be
    # held to steps of ~3e-4.
    if method == "kvaerno5":
        assert sol.stats.n_steps < 60, sol.stats


def test_newton_failure_raises_on_fixed_grid():
    def blowup(t, y):
        return y**3 * 50.0

    with pytest.raises(SolverError, match="max_iters") as err:
        solve(
            blowup,
            torch.tensor([1.0], dtype=torch.float64),
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            method="implicit_euler",
            options={"step_size": 0.5, "max_iters": 3},
        )
    assert err.value.reason == "newton"


def test_adaptive_newton_failure_shrinks_the_step():
    # A large first step forces Newton failures; the loop recovers.
    sol = solve(
        robertson,
        torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
        torch.tensor([0.0, 40.0], dtype=torch.float64),
        method="kvaerno5",
        rtol=1e-6,
        atol=1e-10,
        options={"first_step": 10.0, "max_iters": 2},
    )
    assert sol.stats.n_rejected >= 1
    assert abs(float(sol.ys[-1].sum()) - 1.0) < 1e-8


def test_options_and_names():
    names = torchnode.methods() if hasattr(torchnode, "methods") else None
    if names is not None:
        for name in [*FIXED, "kvaerno5"]:
            assert name in names
    with pytest.raises(ValueError, match="max_iters"):
        solve(
            _linear,
            _Y0,
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            method="gl4",
            options={"step_size": 0.1, "max_iters": 0},
        )
    with pytest.raises(ValueError, match="real state"):
        solve(
            lambda t, y: -y,
            torch.ones(2, dtype=torch.complex128),
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            method="kvaerno5",
        )


def test_dense_output_kvaerno5():
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    sol = solve(_linear, _Y0, t, method="kvaerno5", rtol=1e-8, atol=1e-10, dense=True)
    tq = torch.tensor([0.13, 0.5, 0.77], dtype=torch.float64)
    got = sol.evaluate(tq)
    exact = torch.stack([torch.linalg.matrix_exp(_A * float(s)) @ _Y0 for s in tq])
    assert float((got - exact).abs().max()) < 1e-4


# -- gradients -------------------------------------------------------------------

_STIFF = torch.tensor([[-60.0, 1.0], [0.5, -1.0]], dtype=torch.float64)
_T = torch.tensor([0.0, 0.2, 0.5], dtype=torch.float64)


def _run(method, options, gradient, rtol=1e-8, atol=1e-10):
    def fn(y0, a):
        return solve(
            lambda t, y: a @ y,
            y0,
            _T,
            method=method,
            options=options,
            rtol=rtol,
            atol=atol,
            gradient=gradient,
        ).ys

    return fn


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("kvaerno5", {}),
        ("radauIIA5", {"step_size": 0.05}),
        ("sdirk2", {"step_size": 0.05}),
    ],
)
@pytest.mark.parametrize("gradient", ["direct", "checkpoint"])
def test_gradcheck_discrete(method, options, gradient):
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    a = _STIFF.clone().requires_grad_()
    assert torch.autograd.gradcheck(_run(method, options, gradient), (y0, a))


def test_gradcheck_adjoint():
    # The adjoint solve runs the state backwards in time, where a decaying mode
    # grows like exp(|lambda| T): a milder stiffness keeps that growth small.
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([[-20.0, 1.0], [0.5, -1.0]], dtype=torch.float64)
    a.requires_grad_()
    fn = _run("kvaerno5", {}, "adjoint", rtol=1e-9, atol=1e-11)
    assert torch.autograd.gradcheck(fn, (y0, a), atol=1e-5, rtol=1e-4)


def test_direct_gradient_does_not_differentiate_newton():
    # The implicit-function-theorem gradient equals the checkpointed one and
    # does not depend on how many Newton iterations ran.
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    a = _STIFF.clone().requires_grad_()
    grads = []
    for iters in (100, 7):
        out = solve(
            lambda t, y: a @ torch.tanh(y),
            y0,
            _T,
            method="gl4",
            options={"step_size": 0.05, "max_iters": iters},
        ).ys
        grads.append(torch.autograd.grad(out.sum(), (y0, a)))
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1, rtol=1e-6, atol=1e-8)


def test_adjoint_fixed_grid_matches_direct():
    # The augmented system's Jacobian comes from forward differences; the
    # adjoint gradient agrees with the discrete one to the method's error, grown
    # by the backward reconstruction of the state (exp(20 * 0.5) here).
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([[-20.0, 1.0], [0.5, -1.0]], dtype=torch.float64)
    a.requires_grad_()
    grads = []
    for gradient in ("direct", "adjoint"):
        out = _run("radauIIA5", {"step_size": 0.02}, gradient)(y0, a)
        grads.append(torch.autograd.grad(out.sum(), (y0, a)))
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1, rtol=5e-3, atol=1e-5)
