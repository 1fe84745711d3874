"""Accuracy of the solve loops: measured orders, closed forms, scipy references,
dense output and the cost of each solve."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import torchnode
from torchnode._numerics.tableaus import ADAPTIVE_NAMES, FIXED_GRID_NAMES, TABLEAUS

F64 = torch.float64
FIXED = sorted(FIXED_GRID_NAMES)
ADAPTIVE = sorted(ADAPTIVE_NAMES)


# Tolerance per method, loose enough for the low orders to stay fast, and the
# factor by which the global error may exceed it (errors add up over steps).
# fehlberg2's estimate compares two nearly equal formulas (their weights differ
# by 1/512), so it undershoots the propagated error more than the others.
TOL = {
    "adaptive_heun": 1e-5,
    "fehlberg2": 1e-5,
    "bosh3": 1e-7,
    "dopri5": 1e-9,
    "tsit5": 1e-9,
    "dopri8": 1e-11,
}
GLOBAL_FACTOR = {m: 1e3 for m in TOL} | {"fehlberg2": 1e4}


def _bound(method: str) -> float:
    return TOL[method] * GLOBAL_FACTOR[method]


def _decay(t, y):
    return -y


# A non-normal linear system with a closed-form flow: y(t) = expm(A t) y0.
LIN_A = torch.tensor([[-0.5, 2.0], [-1.0, -0.3]], dtype=F64)
LIN_Y0 = torch.tensor([1.0, -0.5], dtype=F64)


def _linear(t, y):
    return LIN_A @ y


def _fitted_order(errors: list[float], steps: list[float]) -> float:
    slope, _ = np.polyfit(np.log(steps), np.log(errors), 1)
    return float(slope)


# --- fixed grids: measured order -------------------------------------------


@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize("problem", ["decay", "linear2d"])
def test_fixed_grid_order_matches_declared_order(method, problem):
    order = TABLEAUS[method].order
    t = torch.tensor([0.0, 1.0], dtype=F64)
    if problem == "decay":
        func, y0, exact = _decay, torch.tensor([1.0], dtype=F64), math.exp(-1)
        exact = torch.tensor([exact], dtype=F64)
    else:
        func, y0 = _linear, LIN_Y0
        exact = torch.linalg.matrix_exp(LIN_A) @ LIN_Y0
    # Steps coarse enough that float64 round-off stays far below the error.
    steps = [1 / 8, 1 / 16, 1 / 32, 1 / 64] if order < 4 else [1 / 4, 1 / 8, 1 / 16]
    errors = []
    for h in steps:
        y = torchnode.odeint(func, y0, t, method=method, options={"step_size": h})
        errors.append(float((y[-1] - exact).abs().max()))
    assert abs(_fitted_order(errors, steps) - order) < 0.2


# --- adaptive methods against closed forms ---------------------------------


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_meets_tolerance_on_linear_system(method):
    t = torch.linspace(0, 3, 7, dtype=F64)
    ys = torchnode.odeint(
        _linear, LIN_Y0, t, method=method, rtol=TOL[method], atol=TOL[method]
    )
    exact = torch.stack([torch.linalg.matrix_exp(LIN_A * s) @ LIN_Y0 for s in t])
    assert float((ys - exact).abs().max()) < _bound(method)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_meets_tolerance_on_exponential_growth(method):
    t = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    ys = torchnode.odeint(
        lambda t, y: 0.8 * y,
        torch.tensor([2.0], dtype=F64),
        t,
        method=method,
        rtol=TOL[method],
        atol=TOL[method],
    )
    exact = 2.0 * torch.exp(0.8 * t)
    rel = (ys[:, 0] - exact).abs() / exact
    assert float(rel.max()) < _bound(method)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_meets_tolerance_on_sine(method):
    # y'' = -4 y as a first-order system; y = sin(2t).
    def osc(t, y):
        return torch.stack([y[1], -4 * y[0]])

    t = torch.linspace(0, 2 * math.pi, 9, dtype=F64)
    ys = torchnode.odeint(
        osc,
        torch.tensor([0.0, 2.0], dtype=F64),
        t,
        method=method,
        rtol=TOL[method],
        atol=TOL[method],
    )
    assert float((ys[:, 0] - torch.sin(2 * t)).abs().max()) < _bound(method)


def _kepler(t, s):
    q, p = s[:2], s[2:]
    r3 = torch.linalg.vector_norm(q) ** 3
    return torch.cat([p, -q / r3])


def _kepler_start(e: float) -> torch.Tensor:
    # Perihelion of an orbit with semi-major axis 1 (period 2 pi), mu = 1.
    return torch.tensor([1 - e, 0.0, 0.0, math.sqrt((1 + e) / (1 - e))], dtype=F64)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_kepler_orbit_returns_after_one_period_with_energy_kept(method):
    e = 0.5
    s0 = _kepler_start(e)
    t = torch.tensor([0.0, math.pi, 2 * math.pi], dtype=F64)
    tol = TOL[method]
    ys = torchnode.odeint(_kepler, s0, t, method=method, rtol=tol, atol=tol)
    # Aphelion at half a period, back at perihelion after a full one.
    aphelion = torch.tensor([-(1 + e), 0.0], dtype=F64)
    assert float((ys[1, :2] - aphelion).abs().max()) < _bound(method)
    assert float((ys[2] - s0).abs().max()) < _bound(method)
    radius = torch.linalg.vector_norm(ys[:, :2], dim=1)
    energy = 0.5 * (ys[:, 2:] ** 2).sum(1) - 1 / radius
    assert float((energy + 0.5).abs().max()) < _bound(method)


def _vdp_reference(mu: float, t_eval: np.ndarray) -> np.ndarray:
    sol = solve_ivp(
        lambda t, y: [y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]],
        (t_eval[0], t_eval[-1]),
        [2.0, 0.0],
        method="DOP853",
        rtol=1e-12,
        atol=1e-12,
        t_eval=t_eval,
    )
    assert sol.success
    return sol.y.T


@pytest.mark.parametrize("method", ADAPTIVE)
def test_van_der_pol_mu5_matches_scipy_dop853(method):
    mu = 5.0

    def vdp(t, y):
        return torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])

    t_eval = np.linspace(0, 10, 6)
    ref = _vdp_reference(mu, t_eval)
    ys = torchnode.odeint(
        vdp,
        torch.tensor([2.0, 0.0], dtype=F64),
        torch.tensor(t_eval),
        method=method,
        rtol=TOL[method],
        atol=TOL[method],
    )
    assert np.abs(ys.numpy() - ref).max() < _bound(method)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_error_falls_as_tolerance_tightens(method):
    t = torch.tensor([0.0, 4.0], dtype=F64)
    exact = torch.linalg.matrix_exp(LIN_A * 4.0) @ LIN_Y0
    errors = []
    for tol in (1e2 * TOL[method], TOL[method], 1e-2 * TOL[method]):
        y = torchnode.odeint(_linear, LIN_Y0, t, method=method, rtol=tol, atol=tol)
        errors.append(float((y[-1] - exact).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-2 * errors[0]


# Evaluations measured on this implementation; the bound is 1.2x, a guard
# against a controller or initial-step regression that costs steps.
NFE_RECORDED = {
    # method: (decay on [0, 5], Van der Pol mu = 5 on [0, 10]), both at TOL
    "adaptive_heun": (854, 4141),
    "fehlberg2": (98, 506),
    "bosh3": (482, 2621),
    "dopri5": (350, 2486),
    "tsit5": (314, 2174),
    "dopri8": (218, 2606),
}


@pytest.mark.parametrize("method", ADAPTIVE)
def test_nfe_per_problem_stays_within_recorded_bound(method):
    mu = 5.0

    def vdp(t, y):
        return torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])

    decay = torchnode.solve(
        _decay,
        torch.tensor([1.0], dtype=F64),
        torch.tensor([0.0, 5.0], dtype=F64),
        method=method,
        rtol=TOL[method],
        atol=TOL[method],
    )
    osc = torchnode.solve(
        vdp,
        torch.tensor([2.0, 0.0], dtype=F64),
        torch.tensor([0.0, 10.0], dtype=F64),
        method=method,
        rtol=TOL[method],
        atol=TOL[method],
    )
    rec_decay, rec_vdp = NFE_RECORDED[method]
    assert decay.stats.nfe <= 1.2 * rec_decay
    assert osc.stats.nfe <= 1.2 * rec_vdp
    assert decay.stats.n_steps == decay.stats.n_accepted + decay.stats.n_rejected


# --- dense output ------------------------------------------------------------


def _sine_system(t, y):
    return torch.stack([y[1], -y[0]])


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_dense_output_has_order_four_inside_steps(method):
    # Fixed steps (first_step with a huge tolerance) make the step size the
    # only variable; the interpolant's error at mid-step then shrinks like h^5
    # locally, which on a fixed horizon shows as order >= 4.
    y0 = torch.tensor([0.0, 1.0], dtype=F64)
    steps = [0.4, 0.2, 0.1]
    errors = []
    for h in steps:
        sol = torchnode.solve(
            _sine_system,
            y0,
            torch.tensor([0.0, 2.0], dtype=F64),
            method=method,
            rtol=0.5,
            atol=0.5,
            dense=True,
            options={"first_step": h, "max_step": h, "min_step": h},
        )
        tq = torch.arange(h * 0.37, 2.0, h, dtype=F64)
        err = (sol.evaluate(tq)[:, 0] - torch.sin(tq)).abs().max()
        errors.append(float(err))
    assert _fitted_order(errors, steps) > 3.8


def test_dense_output_is_differentiable_with_respect_to_parameters():
    k = torch.tensor(0.7, dtype=F64, requires_grad=True)
    sol = torchnode.solve(
        lambda t, y: -k * y,
        torch.tensor([1.0], dtype=F64),
        torch.tensor([0.0, 2.0], dtype=F64),
        rtol=1e-10,
        atol=1e-12,
        dense=True,
    )
    y = sol.evaluate(torch.tensor(1.3, dtype=F64))
    (dk,) = torch.autograd.grad(y.sum(), k)
    assert float(y.detach()) == pytest.approx(math.exp(-0.91), rel=1e-8)
    assert float(dk) == pytest.approx(-1.3 * math.exp(-0.91), rel=1e-6)


def test_dense_output_refuses_times_outside_the_interval():
    sol = torchnode.solve(
        _decay,
        torch.tensor([1.0], dtype=F64),
        torch.tensor([0.0, 1.0], dtype=F64),
        dense=True,
    )
    with pytest.raises(ValueError, match="inside the solved interval"):
        sol.evaluate(1.5)


def test_evaluate_without_dense_says_how_to_enable_it():
    sol = torchnode.solve(
        _decay, torch.tensor([1.0], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    )
    with pytest.raises(RuntimeError, match="dense=True"):
        sol.evaluate(0.5)
