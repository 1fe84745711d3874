"""Failure cases reported against other ODE libraries, each with its right answer.

The case ids (B01, ...) refer to the project's list of field cases; every value
below is a closed form, an mpmath value or scipy at tight tolerance.
"""

import cmath
import math
import warnings

import pytest
import torch
from benchmarks.stiff import rob_t as _robertson

import torchnode
from torchnode import SolverError, StiffnessWarning, ToleranceWarning

F64 = torch.float64
MODES = ["direct", "adjoint", "checkpoint"]


def _t(*values, dtype=F64):
    return torch.tensor(values, dtype=dtype)


# --- B01 ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "dopri8", "adaptive_heun"])
@pytest.mark.parametrize("grid", [(0.0, 1.0), (0.0, 0.5, 1.0)])
def test_B01_field_undefined_past_t1_is_never_called_there(method, grid):
    seen = []

    def f(t, y):
        seen.append(float(t))
        return torch.sqrt(1 - t) * y

    y = torchnode.odeint(f, _t(1.0), _t(*grid), method=method)
    assert max(seen) <= 1.0 and min(seen) >= 0.0
    assert float(y[-1]) == pytest.approx(1.9477340410546757, abs=1e-6)
    if len(grid) == 3:
        assert float(y[1]) == pytest.approx(1.5387407794600545, abs=1e-6)


@pytest.mark.parametrize("t_end", [1.0, 1e-4])
def test_B01_benign_probe_stays_inside_short_intervals(t_end):
    seen = []

    def f(t, y):
        seen.append(float(t))
        return torch.cos(t) * y

    y = torchnode.odeint(f, _t(1.0), _t(0.0, t_end))
    assert min(seen) >= 0.0 and max(seen) <= t_end
    assert float(y[-1]) == pytest.approx(math.exp(math.sin(t_end)), rel=1e-7)


# --- B03 ------------------------------------------------------------------------


def test_B03_explicit_solver_stops_on_step_budget_with_stiffness_hint():
    with pytest.raises(SolverError) as info:
        torchnode.odeint(
            _robertson,
            _t(1.0, 0.0, 0.0),
            _t(0.0, 40.0),
            rtol=1e-6,
            atol=1e-10,
            options={"max_num_steps": 2000},
        )
    err = info.value
    assert err.reason == "max_num_steps"
    assert "max_num_steps = 2000" in str(err)
    assert "stiff" in str(err) and "implicit" in str(err)
    assert 0 < err.t < 40


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_B03_unbounded_explicit_solve_warns_that_it_crawls(method):
    # The default budget is unlimited; after 10^4 steps pinned at the stability
    # limit the user is told why, how far there is to go, and what to use.
    with (
        pytest.warns(StiffnessWarning, match="looks stiff") as record,
        pytest.raises(SolverError, match="max_num_steps"),
    ):
        torchnode.odeint(
            _robertson,
            _t(1.0, 0.0, 0.0),
            _t(0.0, 1e5),
            rtol=1e-6,
            atol=1e-10,
            method=method,
            options={"max_num_steps": 12_000},
        )
    text = str(record[0].message)
    assert "rodas4" in text and "more steps" in text
    # The warning points at the caller, not into the library.
    assert record[0].filename == __file__


def test_B03_non_stiff_long_solve_does_not_warn():
    # 10^4+ steps of a fast, non-stiff oscillation: accuracy, not stability,
    # sets the step, so no stiffness warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", StiffnessWarning)
        sol = torchnode.solve(
            lambda t, y: torch.stack([y[1], -y[0]]),
            _t(1.0, 0.0),
            _t(0.0, 2000.0),
            rtol=1e-10,
            atol=1e-10,
        )
    assert sol.stats.n_steps > 10_000
    assert float(sol.ys[-1, 0]) == pytest.approx(math.cos(2000.0), abs=1e-5)


@pytest.mark.parametrize(("method", "step"), [("rk4", 0.01), ("euler", 1e-3)])
def test_B03_fixed_step_nan_is_an_error_not_a_result(method, step):
    with pytest.raises(SolverError, match="non-finite") as info:
        torchnode.odeint(
            _robertson,
            _t(1.0, 0.0, 0.0),
            _t(0.0, 40.0),
            method=method,
            options={"step_size": step},
        )
    assert info.value.reason == "non_finite"
    assert "step" in str(info.value)


# --- B05 ------------------------------------------------------------------------

A05 = 16.0


def _b05(t, s):
    x, y = s.unbind()
    return torch.stack([-x * x + y * y - A05 * A05, -2 * x * y])


def _b05_exact(t: float) -> complex:
    return A05 / cmath.tan(A05 * t - 1j * math.log(21) / 2)


def test_B05_long_horizon_matches_cotangent_solution():
    t = torch.linspace(0, 10, 11, dtype=F64)
    ys = torchnode.odeint(_b05, _t(0.0, 17.6), t, rtol=1e-8, atol=1e-8)
    for i in (1, 5, 10):
        z = _b05_exact(float(t[i]))
        assert float(ys[i, 0]) == pytest.approx(z.real, abs=2e-4)
        assert float(ys[i, 1]) == pytest.approx(z.imag, abs=2e-4)
    assert float(ys[1, 0]) == pytest.approx(0.9105473392951904, abs=1e-4)


def test_B05_step_budget_is_a_clear_error_never_a_truncated_trajectory():
    with pytest.raises(SolverError, match="max_num_steps = 300 exceeded") as info:
        torchnode.odeint(
            _b05,
            _t(0.0, 17.6),
            torch.linspace(0, 10, 11, dtype=F64),
            rtol=1e-8,
            atol=1e-8,
            options={"max_num_steps": 300},
        )
    assert info.value.t < 10.0


# --- B06 ------------------------------------------------------------------------


def _decay(t, y):
    return -y


def test_B06a_zero_tolerance_warns_and_solves():
    with pytest.warns(ToleranceWarning, match="rtol = 0"):
        y = torchnode.odeint(_decay, _t(1.0), _t(0.0, 1.0), rtol=0.0, atol=0.0)
    assert float(y[-1]) == pytest.approx(0.36787944117144233, rel=1e-12)


@pytest.mark.parametrize("tol", [1e-20, 1e-15, 1e-9])
def test_B06bc_tolerance_below_float32_resolution_warns_and_solves(tol):
    with pytest.warns(ToleranceWarning, match="below the unit roundoff"):
        y = torchnode.odeint(
            _decay, torch.ones(1), torch.tensor([0.0, 1.0]), rtol=tol, atol=tol
        )
    assert float(y[-1]) == pytest.approx(0.36787944117144233, rel=1e-5)


@pytest.mark.parametrize(("tol", "t_end"), [(10.0, 10.0), (1.0, 100.0)])
def test_B06de_huge_tolerance_warns_and_keeps_a_decaying_state_bounded(tol, t_end):
    with pytest.warns(ToleranceWarning, match=">= 1"):
        y = torchnode.odeint(
            _decay, torch.ones(1), torch.tensor([0.0, t_end]), rtol=tol, atol=tol
        )
    assert torch.isfinite(y).all()
    assert float(y.abs().max()) <= 1.0 + 1e-6


@pytest.mark.parametrize(
    ("method", "tol", "t_end"),
    [("bosh3", 10.0, 10.0), ("tsit5", 1.0, 100.0), ("dopri5", 100.0, 1000.0)],
)
def test_B06de_huge_tolerance_never_grows_a_decaying_state_any_method(
    method, tol, t_end
):
    with pytest.warns(ToleranceWarning, match=">= 1"):
        y = torchnode.odeint(
            _decay,
            torch.ones(1),
            torch.tensor([0.0, t_end]),
            rtol=tol,
            atol=tol,
            method=method,
        )
    assert float(y.abs().max()) <= 1.0 + 1e-6


# --- B07, B08 ---------------------------------------------------------------------


def test_B07_adjoint_params_may_include_a_tensor_without_grad():
    x = torch.tensor([0.3, 0.5, 0.7], dtype=F64, requires_grad=True)
    xx = torch.tensor([0.1], dtype=F64)
    y0 = torch.tensor([1.0, 2.0, 3.0], dtype=F64, requires_grad=True)
    y = torchnode.odeint_adjoint(
        lambda t, y: x * y, y0, _t(0.0, 1.0), adjoint_params=(x, xx)
    )
    y[-1].sum().backward()
    ex = torch.exp(x.detach())
    torch.testing.assert_close(y0.grad, ex, rtol=1e-6, atol=0)
    torch.testing.assert_close(x.grad, y0.detach() * ex, rtol=1e-6, atol=0)
    assert xx.grad is None


@pytest.mark.parametrize("mode", MODES)
def test_B08a_tensor_outside_a_parameterless_module_gets_its_gradient(mode):
    a = torch.tensor(0.7, dtype=F64, requires_grad=True)

    class Field(torch.nn.Module):
        def forward(self, t, y):
            return -a * y

    sol = torchnode.solve(
        Field(), _t(1.0), _t(0.0, 2.0), rtol=1e-10, atol=1e-10, gradient=mode
    )
    sol.ys[-1].sum().backward()
    assert float(a.grad) == pytest.approx(-0.493193927883213, rel=1e-7)


@pytest.mark.parametrize("mode", MODES)
def test_B08b_buffer_computed_from_a_grad_tensor_passes_its_gradient(mode):
    c0 = torch.tensor(0.5, dtype=F64, requires_grad=True)

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("c", c0 * 1.0)

        def forward(self, t, y):
            return -self.c * y

    sol = torchnode.solve(
        Field(), _t(1.0), _t(0.0, 1.0), rtol=1e-10, atol=1e-10, gradient=mode
    )
    sol.ys[-1].sum().backward()
    assert float(c0.grad) == pytest.approx(-0.6065306597126334, rel=1e-7)


# --- B10 --------------------------------------------------------------------------


class _GradientFlow(torch.nn.Module):
    def __init__(self, defensive: bool):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.5, dtype=F64))
        self.defensive = defensive

    def forward(self, t, x):
        if self.defensive:
            with torch.enable_grad():
                x = x if x.requires_grad else x.requires_grad_(True)
                energy = 0.5 * self.w * (x**2).sum()
                return -torch.autograd.grad(energy, x, create_graph=True)[0]
        energy = 0.5 * self.w * (x**2).sum()
        return -torch.autograd.grad(energy, x, create_graph=True)[0]


@pytest.mark.parametrize("defensive", [False, True], ids=["naive", "defensive"])
@pytest.mark.parametrize("mode", MODES)
def test_B10_field_that_calls_autograd_works_in_every_mode(mode, defensive):
    field = _GradientFlow(defensive)
    x0 = torch.tensor([1.0, -2.0], dtype=F64, requires_grad=True)
    sol = torchnode.solve(
        field, x0, _t(0.0, 1.0), rtol=1e-10, atol=1e-10, gradient=mode
    )
    sol.ys[-1].sum().backward()
    exact = torch.tensor([0.22313016014842982, -0.44626032029685964], dtype=F64)
    torch.testing.assert_close(sol.ys[-1].detach(), exact, rtol=1e-8, atol=0)
    assert float(field.w.grad) == pytest.approx(0.22313016014842982, rel=1e-7)
    torch.testing.assert_close(
        x0.grad, torch.full((2,), math.exp(-1.5), dtype=F64), rtol=1e-7, atol=0
    )


# --- B11 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "method", "options", "direct", "adjoint"),
    [
        # direct: the derivative of the discrete map; adjoint: the continuous
        # gradient -e^{-1/2}, approximated by the backward solve's discretisation.
        ("a", "euler", None, -1.0, -0.5),
        ("b", "euler", {"step_size": 0.1}, -0.6302494097246091, -0.5920458580699873),
        ("c", "rk4", None, -0.6041666666666667, -0.6055857340494792),
        ("d", "dopri5", None, -0.6065306597126334, -0.6065306597126334),
    ],
)
def test_B11_direct_is_the_discrete_gradient_adjoint_the_continuous_one(
    case, method, options, direct, adjoint
):
    got = {}
    for mode in MODES:
        w = torch.tensor(0.5, dtype=F64, requires_grad=True)
        sol = torchnode.solve(
            lambda t, y, w=w: -w * y,
            _t(1.0),
            _t(0.0, 1.0),
            method=method,
            options=options,
            gradient=mode,
        )
        sol.ys[-1].sum().backward()
        got[mode] = float(w.grad)
    tol = 1e-6 if method == "dopri5" else 1e-12
    assert got["direct"] == pytest.approx(direct, abs=tol)
    assert got["checkpoint"] == pytest.approx(got["direct"], abs=1e-12)
    assert got["adjoint"] == pytest.approx(adjoint, abs=1e-6)
    # The adjoint's error from the continuous gradient shrinks with the step.
    continuous = -math.exp(-0.5)
    assert abs(got["adjoint"] - continuous) <= abs(got["direct"] - continuous) + 1e-6


# --- B12, B13 ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_B12_tuple_state_with_per_part_tolerances_in_every_mode(mode):
    w = torch.tensor(0.5, dtype=F64, requires_grad=True)
    z = torch.tensor([[1.0, 2.0]], dtype=F64, requires_grad=True)
    logp = torch.zeros(1, 1, dtype=F64)

    def f(t, s):
        return (-w * s[0], 2 * w * torch.ones_like(s[1]))

    sol = torchnode.solve(
        f, (z, logp), _t(0.0, 1.0), rtol=[1e-8, 1e-8], atol=[1e-8, 1e-8], gradient=mode
    )
    loss = sol.ys[0][-1].sum() + sol.ys[1][-1].sum()
    loss.backward()
    assert float(loss.detach()) == pytest.approx(3 * math.exp(-0.5) + 1.0, rel=1e-7)
    assert float(w.grad) == pytest.approx(0.18040802086209973, abs=1e-7)
    torch.testing.assert_close(
        z.grad, torch.full((1, 2), math.exp(-0.5), dtype=F64), rtol=1e-7, atol=0
    )


def test_B13a_complex64_oscillator_with_real_time():
    a = torch.tensor([[0, 1], [-100, 0]], dtype=torch.complex64)
    t_dtypes = set()

    def f(t, y):
        t_dtypes.add(t.dtype)
        return a @ y

    t = torch.linspace(0, 2, 10)
    y = torchnode.odeint(f, torch.tensor([1, 9], dtype=torch.complex64), t)
    t64 = t.double()
    exact = torch.cos(10 * t64) + 0.9 * torch.sin(10 * t64)
    assert float((y[:, 0].to(torch.complex128) - exact).abs().max()) < 1e-5
    assert float(y[-1, 0].real) == pytest.approx(1.2297327874682569, abs=1e-5)
    assert t_dtypes == {torch.float32}


@pytest.mark.parametrize("mode", MODES)
def test_B13b_complex_state_with_real_parameter_gradient(mode):
    w = torch.tensor(1.0, dtype=F64, requires_grad=True)
    sol = torchnode.solve(
        lambda t, y: -1j * w * y,
        torch.tensor([1 + 0j], dtype=torch.complex128),
        _t(0.0, 1.0),
        gradient=mode,
    )
    sol.ys[-1].real.sum().backward()
    assert float(sol.ys[-1].real.detach()) == pytest.approx(math.cos(1), abs=1e-7)
    assert w.grad.dtype == F64
    assert float(w.grad) == pytest.approx(-0.8414709848078965, abs=1e-6)


# --- B15, B17 ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    ("method", "options"), [("dopri5", None), ("rk4", {"step_size": 0.01})]
)
def test_B15_half_precision_state_reaches_the_right_value(dtype, method, options):
    y = torchnode.odeint(
        lambda t, y: -torch.cos(t).to(y.dtype) * y,
        torch.ones(1, dtype=dtype),
        torch.tensor([0.0, 1.0]),
        method=method,
        options=options,
    )
    assert y.dtype == dtype
    # Within the state dtype's own rounding of the answer 0.43107595...
    ulp = 2.0**-8 if dtype == torch.bfloat16 else 2.0**-11
    assert float(y[-1]) == pytest.approx(0.43107595064559234, abs=2 * ulp)


@pytest.mark.parametrize("times", [(0.0, 0.0), (1.0, 1.0)])
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_B17_zero_length_interval_returns_y0_without_evaluations(times, method):
    y0 = torch.tensor([[1.0], [2.0]], dtype=F64)
    sol = torchnode.solve(_decay, y0, _t(*times), method=method)
    assert torch.equal(sol.ys, torch.stack([y0, y0]))
    assert sol.stats.nfe == 0 and sol.status == "success"


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "rk4"])
def test_B17_repeated_time_points_repeat_the_value(method):
    options = {"step_size": 0.01} if method == "rk4" else None
    y = torchnode.odeint(
        _decay, _t(1.0), _t(0.0, 1.0, 1.0, 2.0), method=method, options=options
    )
    exact = torch.tensor([1.0, math.exp(-1), math.exp(-1), math.exp(-2)], dtype=F64)
    torch.testing.assert_close(y[:, 0], exact, rtol=1e-6, atol=0)
    assert torch.equal(y[1], y[2])


# --- B19 --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_B19a_gradient_with_respect_to_every_output_time(mode):
    x0 = torch.tensor([1.0], dtype=F64, requires_grad=True)
    t = torch.linspace(0, 1, 5, dtype=F64, requires_grad=True)
    sol = torchnode.solve(lambda t, y: y, x0, t, rtol=1e-10, atol=1e-10, gradient=mode)
    sol.ys.sum().backward()
    exact = [
        -7.768028532459589,
        1.2840254166877414,
        1.6487212707001282,
        2.117000016612675,
        2.718281828459045,
    ]
    torch.testing.assert_close(
        t.grad, torch.tensor(exact, dtype=F64), rtol=1e-7, atol=0
    )


@pytest.mark.parametrize("mode", MODES)
def test_B19b_gradient_with_respect_to_start_and_end_times(mode):
    t = torch.tensor([0.5, 1.5], dtype=F64, requires_grad=True)
    sol = torchnode.solve(
        lambda t, y: t * y, _t(1.0), t, rtol=1e-10, atol=1e-10, gradient=mode
    )
    sol.ys[-1].sum().backward()
    assert float(sol.ys[-1].detach()) == pytest.approx(math.e, rel=1e-9)
    torch.testing.assert_close(
        t.grad,
        torch.tensor([-1.3591409142295225, 4.077422742688568], dtype=F64),
        rtol=1e-8,
        atol=0,
    )


# --- B21, B22 ---------------------------------------------------------------------

OMEGA, LAMBDA = 2 * math.pi, 0.1


def _forced(t, s):
    x, v = s.unbind()
    force = OMEGA**2 if float(t) >= 7.5 else 0.0
    return torch.stack([v, -2 * LAMBDA * OMEGA * v - OMEGA**2 * x + force])


B21_AT_7_5 = (-0.008522551986638819, -0.01327555022830544)
B21_AT_15 = (1.008590721661731, 0.01350744326321365)


@pytest.mark.parametrize("option", [None, "jump_t", "step_t"])
def test_B21_declared_jump_keeps_the_solve_accurate_and_cheap(option):
    options = None if option is None else {option: torch.tensor([7.5])}
    sol = torchnode.solve(
        _forced, _t(1.0, 0.0), _t(0.0, 15.0), rtol=1e-8, atol=1e-8, options=options
    )
    torch.testing.assert_close(
        sol.ys[-1], torch.tensor(B21_AT_15, dtype=F64), rtol=0, atol=1e-7
    )


@pytest.mark.parametrize("tol", [1e-6, 1e-7, 1e-8, 1e-9])
def test_B21_declaring_the_time_costs_a_bounded_number_of_steps(tol):
    def steps(options=None) -> int:
        sol = torchnode.solve(
            _forced, _t(1.0, 0.0), _t(0.0, 15.0), rtol=tol, atol=tol, options=options
        )
        return int(sol.stats.n_steps)

    plain = steps()
    # jump_t evaluates each side of 7.5 on its own: no step straddles the jump.
    assert steps({"jump_t": torch.tensor([7.5])}) < plain
    # step_t only makes 7.5 a grid point; every step that lands there still
    # sees the forcing switched on at its last stages, so the approach shrinks
    # geometrically (a few dozen steps at most, whatever the tolerance), and
    # must never stall.
    assert steps({"step_t": torch.tensor([7.5])}) <= plain + 45


def test_B21_jump_at_an_output_time_takes_the_left_limit():
    sol = torchnode.solve(
        _forced,
        _t(1.0, 0.0),
        _t(0.0, 7.5, 15.0),
        rtol=1e-8,
        atol=1e-8,
        options={"jump_t": [7.5]},
    )
    torch.testing.assert_close(
        sol.ys[1], torch.tensor(B21_AT_7_5, dtype=F64), rtol=0, atol=1e-7
    )
    torch.testing.assert_close(
        sol.ys[2], torch.tensor(B21_AT_15, dtype=F64), rtol=0, atol=1e-7
    )


@pytest.mark.parametrize(
    ("method", "options", "tol"),
    [
        ("dopri5", None, 1e-9),
        ("rk4", {"step_size": 0.05}, 1e-12),
        ("midpoint", {"step_size": 0.05}, 1e-12),
        ("euler", {"step_size": 0.05}, 0.03),
    ],
)
def test_B22_backward_solve_sees_only_times_in_the_callers_interval(
    method, options, tol
):
    seen = []

    def f(t, y):
        seen.append(float(t))
        return t.reshape(1).to(y.dtype)

    t = torch.linspace(1, 0, 5, dtype=F64)
    y = torchnode.odeint(
        f, _t(0.0), t, method=method, options=options, rtol=1e-10, atol=1e-10
    )
    exact = torch.tensor([0.0, -0.21875, -0.375, -0.46875, -0.5], dtype=F64)
    torch.testing.assert_close(y[:, 0], exact, rtol=0, atol=tol)
    assert min(seen) >= 0.0 and max(seen) <= 1.0


# --- B23 --------------------------------------------------------------------------


def _rk4_factor(z: float) -> float:
    return 1 + z + z * z / 2 + z**3 / 6 + z**4 / 24


def test_B23a_step_not_dividing_the_interval_ends_with_a_short_step():
    y = torchnode.odeint(
        _decay, _t(1.0), _t(0.0, 1.0), method="rk4", options={"step_size": 0.3}
    )
    assert float(y[-1]) == pytest.approx(
        _rk4_factor(-0.3) ** 3 * _rk4_factor(-0.1), rel=1e-14
    )


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_B23b_float32_grid_has_no_zero_length_step_and_hits_the_end(method):
    starts = []

    def f(t, y):
        starts.append(t.item())
        return -y

    t = torch.tensor([0.0, 1.1, 2.2])
    sol = torchnode.solve(
        f, torch.ones(1), t, method=method, options={"step_size": 0.01}
    )
    assert sol.stats.n_steps == 220
    assert max(starts) <= t[-1].item()
    tol = 2e-2 if method == "euler" else 1e-4
    torch.testing.assert_close(sol.ys[:, 0], torch.exp(-t), rtol=tol, atol=0)


@pytest.mark.parametrize("interp", [None, "cubic"])
def test_B23c_off_grid_output_is_accurate_to_the_method(interp):
    options = {"step_size": 0.3} | ({"interp": interp} if interp else {})
    y = torchnode.odeint(
        _decay, _t(1.0), _t(0.0, 0.45, 1.0), method="rk4", options=options
    )
    assert float(y[1]) == pytest.approx(0.6376281516217733, abs=3e-5)


def test_B23d_many_small_float32_euler_steps_hit_the_end_exactly():
    seen = []

    def f(t, y):
        seen.append(t)
        return y

    t = torch.tensor([0.0, 5.9])
    sol = torchnode.solve(
        f, torch.ones(1), t, method="euler", options={"step_size": 1e-4}
    )
    assert sol.stats.n_steps == 59000
    assert float(sol.ys[-1]) == pytest.approx(364.929804870617, rel=1e-5)


# --- B25 --------------------------------------------------------------------------


class _WithUnusedLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.5, dtype=F64))
        self.unused = torch.nn.Linear(3, 3).double()

    def forward(self, t, x):
        return -self.a * x


@pytest.mark.parametrize("mode", MODES)
def test_B25_unused_registered_parameter_gets_zero_gradient(mode):
    field = _WithUnusedLayer()
    x0 = torch.tensor([[1.0], [2.0]], dtype=F64, requires_grad=True)
    sol = torchnode.solve(
        field,
        x0,
        torch.linspace(0, 1, 3, dtype=F64),
        rtol=1e-9,
        atol=1e-9,
        gradient=mode,
    )
    sol.ys[-1].sum().backward()
    assert float(field.a.grad) == pytest.approx(-1.8195919791379003, rel=1e-7)
    for p in field.unused.parameters():
        assert p.grad is None or not bool(p.grad.any())


@pytest.mark.parametrize("mode", MODES)
def test_B25_related_three_species_loss_and_gradient(mode):
    p = torch.tensor([2.5, 4.5, 2.5], dtype=F64, requires_grad=True)

    def f(t, y):
        return torch.stack(
            [2 - p[0] * y[0], y[0] - p[1] * y[1], torch.zeros_like(y[0])]
        )

    sol = torchnode.solve(f, _t(1.0, 1.0, 2.5), _t(0.0, 0.5, 0.75, 20.0), gradient=mode)
    loss = ((sol.ys - 1) ** 2).sum()
    loss.backward()
    assert float(loss.detach()) == pytest.approx(10.891614932449128, rel=1e-7)
    exact = torch.tensor([0.5613744601699122, 0.28128532769636383, 0.0], dtype=F64)
    torch.testing.assert_close(p.grad, exact, rtol=0, atol=1e-6)


# --- B32 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rtol", "atol", "phase_tol"),
    [(1e-4, 1e-6, 3e-2), (1e-4, 1e-4, 3e-2), (1e-6, 1e-8, 1e-3)],
)
def test_B32_float32_time_near_large_t1_terminates_exactly_at_t1(rtol, atol, phase_tol):
    seen = []

    def f(t, s):
        seen.append(t.item())
        return torch.stack([s[1], -s[0]])

    sol = torchnode.solve(
        f, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 600.0]), rtol=rtol, atol=atol
    )
    assert max(seen) == 600.0
    assert sol.stats.n_steps < 5000
    exact = torch.tensor([-0.9990234788329058, -0.044182448331873195])
    assert float((sol.ys[-1] - exact).abs().max()) < phase_tol


def _spiral(t, y):
    # Eigenvalues -0.1 +- 2i: a slowly decaying oscillation, whose step
    # factors sit near the imaginary axis where explicit methods are weakest.
    return y @ torch.tensor([[-0.1, -2.0], [2.0, -0.1]], dtype=y.dtype)


@pytest.mark.parametrize(
    "method", ["dopri5", "tsit5", "bosh3", "dopri8", "adaptive_heun", "fehlberg2"]
)
def test_B06_kind_huge_tolerance_never_grows_a_contracting_spiral(method):
    with pytest.warns(ToleranceWarning, match=">= 1"):
        y = torchnode.odeint(
            _spiral,
            torch.tensor([2.0, 0.0]),
            torch.linspace(0.0, 1000.0, 50),
            rtol=100.0,
            atol=100.0,
            method=method,
        )
    norms = y.norm(dim=-1)
    assert float(norms.max()) <= 2.0 + 1e-5
    # Not merely bounded: it decays as the exact 2 e^(-0.1 t) does.
    assert float(norms[-1]) < 1e-3


def test_B06_kind_huge_tolerance_spiral_per_sample_and_backwards():
    y0 = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=F64)
    with pytest.warns(ToleranceWarning, match=">= 1"):
        sol = torchnode.solve(
            _spiral,
            y0,
            torch.linspace(0.0, 500.0, 20),
            rtol=10.0,
            atol=10.0,
            per_sample=True,
        )
    assert float(sol.ys.norm(dim=-1).max()) <= 2.0 + 1e-9
    # Backwards in time the spiral grows as e^(0.1 |t|): no more than that.
    with pytest.warns(ToleranceWarning, match=">= 1"):
        y = torchnode.odeint(
            _spiral, y0[0], torch.tensor([0.0, -30.0]), rtol=10.0, atol=10.0
        )
    exact = 2.0 * math.exp(3.0)
    assert float(y[-1].norm()) <= 1.5 * exact


def _norms_of_huge_tolerance_solve(a, y0, t_end, method):
    with pytest.warns(ToleranceWarning, match=">= 1"):
        y = torchnode.odeint(
            lambda t, y: a @ y,
            y0,
            torch.linspace(0.0, t_end, 6, dtype=F64),
            rtol=10.0,
            atol=1e-6,
            method=method,
        )
    return y.norm(dim=-1)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adaptive_heun"])
def test_B06_kind_huge_tolerance_disc_spectrum_never_grows(method):
    # Eigenvalues spread over a disc of radius ~1000 around -1500, symmetric
    # part negative definite: |y| must fall. Eight Arnoldi steps place their
    # Ritz values inside the disc; unpadded, the step left the region (1e21).
    gen = torch.Generator().manual_seed(23)
    n = 20
    a = (
        -1.5 * torch.eye(n, dtype=F64)
        + torch.randn(n, n, generator=gen, dtype=F64) / n**0.5
    ) * 1000
    assert float(torch.linalg.eigvalsh((a + a.T) / 2).max()) < 0
    norms = _norms_of_huge_tolerance_solve(a, torch.ones(n, dtype=F64), 0.2, method)
    assert float(norms.max()) <= float(norms[0]) * (1 + 1e-9)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adaptive_heun"])
def test_B06_kind_huge_tolerance_non_normal_never_grows(method):
    # A contracting (log-norm -5) but far from normal matrix: a double
    # eigenvalue -1000 with a large coupling. Eigenvalues alone allow steps
    # whose products grow 3x before decaying; the numerical range does not.
    a = torch.tensor([[-1.0, 1.99], [0.0, -1.0]], dtype=F64) * 1000
    norms = _norms_of_huge_tolerance_solve(a, _t(0.0, 1.0), 0.05, method)
    assert float(norms.max()) <= 1.0 + 1e-9


@pytest.mark.parametrize("method", ["adaptive_heun", "fehlberg2"])
def test_B06_kind_huge_tolerance_barely_damped_oscillation_second_order(method):
    # Eigenvalues -0.001 +- 1000i: Heun-type regions only touch the imaginary
    # axis, so the step must follow their tiny true extent there.
    a = torch.tensor([[-1e-3, 1000.0], [-1000.0, -1e-3]], dtype=F64)
    norms = _norms_of_huge_tolerance_solve(a, _t(1.0, 0.0), 0.05, method)
    assert float(norms.max()) <= 1.0 + 1e-9
    assert float(norms[-1]) >= math.exp(-1e-3 * 0.05) - 1e-3


def test_B06_kind_per_sample_tiny_tolerance_is_clamped_with_a_warning():
    y0 = torch.tensor([[1.0], [2.0]])
    with pytest.warns(ToleranceWarning, match="unit roundoff"):
        sol = torchnode.solve(
            _decay,
            y0,
            torch.tensor([0.0, 1.0]),
            rtol=1e-20,
            atol=1e-20,
            per_sample=True,
        )
    exact = y0[:, 0] * math.exp(-1.0)
    assert torch.allclose(sol.ys[:, -1, 0], exact, rtol=1e-6, atol=0)


def test_B06_kind_huge_tolerance_high_dimensional_and_user_tableau():
    # 40 components: 20 decaying rotations with frequencies 1..39, mixed by a
    # random orthogonal basis, so no component is an eigenvector.
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=gen, dtype=F64))
    blocks = torch.zeros(40, 40, dtype=F64)
    for i in range(0, 40, 2):
        blocks[i, i] = blocks[i + 1, i + 1] = -0.05
        blocks[i, i + 1], blocks[i + 1, i] = 1.0 + i, -1.0 - i
    a = q @ blocks @ q.T
    y0 = torch.randn(40, generator=gen, dtype=F64)
    # RK3 (Kutta) as a user tableau with a first-order embedded estimate: no
    # table of method names can know its stability region.
    tab = torchnode.ButcherTableau.build(
        "kutta3-user",
        c=[0, 0.5, 1],
        a=[[], [0.5], [-1, 2]],
        b=[1 / 6, 2 / 3, 1 / 6],
        order=3,
        source="Kutta (1901)",
        b_hat=[0, 1, 0],
        error_order=2,
    )
    for method in ("dopri5", tab):
        with pytest.warns(ToleranceWarning, match=">= 1"):
            y = torchnode.odeint(
                lambda t, y: a @ y,
                y0,
                torch.linspace(0.0, 40.0, 10),
                rtol=5.0,
                atol=5.0,
                method=method,
            )
        assert float(y.norm(dim=-1).max()) <= float(y0.norm()) * (1 + 1e-9)
