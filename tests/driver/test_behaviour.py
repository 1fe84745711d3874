"""The solve loops' contract: state types, time handling, callbacks, option and
input validation, and how failures are reported."""

import math
import warnings

import pytest
import torch

import torchnode
from torchnode import SolverError
from torchnode._numerics.tableaus import ADAPTIVE_NAMES, FIXED_GRID_NAMES

F64 = torch.float64
ALL_METHODS = sorted(ADAPTIVE_NAMES) + sorted(FIXED_GRID_NAMES)
T01 = torch.tensor([0.0, 1.0], dtype=F64)
ONE = torch.tensor([1.0], dtype=F64)


def _decay(t, y):
    return -y


def _options(method: str) -> dict | None:
    return {"step_size": 0.05} if method in FIXED_GRID_NAMES else None


# --- state types ---------------------------------------------------------------


def test_tuple_state_returns_tuple_of_trajectories():
    def f(t, s):
        return (-s[0], 2 * s[1])

    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    a, b = torchnode.odeint(f, (ONE, torch.ones(2, 2, dtype=F64)), t)
    assert a.shape == (3, 1) and b.shape == (3, 2, 2)
    torch.testing.assert_close(a[:, 0], torch.exp(-t), rtol=1e-6, atol=0)
    torch.testing.assert_close(b[:, 0, 0], torch.exp(2 * t), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_state_rotates_on_the_unit_circle(dtype):
    w = 3.0
    t = torch.linspace(0, 2, 5, dtype=F64)
    y = torchnode.odeint(lambda t, y: 1j * w * y, torch.ones(1, dtype=dtype), t)
    assert y.dtype == dtype
    exact = torch.exp(1j * w * t).to(dtype)
    tol = 1e-4 if dtype == torch.complex64 else 1e-6
    assert float((y[:, 0] - exact).abs().max()) < tol


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_half_precision_state_is_integrated_with_wider_time(dtype, method):
    seen = []

    def f(t, y):
        seen.append((t.dtype, y.dtype))
        return -torch.cos(t).to(y.dtype) * y

    options = {"step_size": 0.01} if method == "rk4" else None
    y = torchnode.odeint(
        f,
        torch.ones(1, dtype=dtype),
        torch.tensor([0.0, 1.0]),
        method=method,
        options=options,
    )
    assert y.dtype == dtype
    assert float(y[-1]) == pytest.approx(math.exp(-math.sin(1)), abs=4e-3)
    assert {s[0] for s in seen} == {torch.float32}
    assert {s[1] for s in seen} == {dtype}


@pytest.mark.parametrize("method", ALL_METHODS)
def test_decreasing_time_integrates_backwards(method):
    t = torch.tensor([1.0, 0.5, 0.0], dtype=F64)
    y = torchnode.odeint(_decay, ONE, t, method=method, options=_options(method))
    exact = torch.exp(1.0 - t)
    tol = 5e-2 if method == "euler" else 1e-3
    torch.testing.assert_close(y[:, 0], exact, rtol=tol, atol=0)


# --- where and when the field is evaluated ----------------------------------


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("t_end", [1.0, 1e-4, -1.0])
def test_field_is_never_evaluated_outside_the_interval(method, t_end):
    seen = []

    def f(t, y):
        seen.append(float(t))
        return torch.cos(t) * y

    t = torch.tensor([0.0, t_end], dtype=F64)
    options = {"step_size": abs(t_end) / 7} if method in FIXED_GRID_NAMES else None
    torchnode.odeint(f, ONE, t, method=method, options=options)
    lo, hi = sorted((0.0, t_end))
    assert seen and lo <= min(seen) and max(seen) <= hi


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "dopri8"])
def test_field_that_shifts_its_time_in_place_sees_the_right_time(method):
    # `t -= 0.5` changes the time tensor handed to the field; the next
    # evaluation at the same time must not get the shifted tensor again.
    def f(t, y):
        t -= 0.5
        return torch.stack([y[1], -y[0]]) * (1.0 + t)

    y0 = torch.tensor([1.0, 0.5], dtype=F64)
    t = torch.tensor([0.0, 2.0], dtype=F64)
    ys = torchnode.odeint(
        f,
        y0,
        t,
        rtol=1e-9,
        atol=1e-11,
        method=method,
        options={"max_num_steps": 5000},
    )
    # A rotation by theta = t^2/2 + t/2, which is 3 at t = 2.
    want = [
        math.cos(3.0) + 0.5 * math.sin(3.0),
        -math.sin(3.0) + 0.5 * math.cos(3.0),
    ]
    assert ys[-1].tolist() == pytest.approx(want, abs=1e-6)


def test_rejected_steps_keep_time_in_float64():
    # float32 time and state; the first step is forced far too large, so it is
    # rejected. The retry must start from the very same time, the field must
    # only see times inside the interval, and the solve must end on t1 exactly.
    starts, rejected, seen = [], [], []

    class Field:
        def __call__(self, t, y):
            seen.append(t)
            return -50 * (y - torch.cos(t))

        def callback_step(self, t0, y0, dt):
            starts.append(t0)

        def callback_reject_step(self, t0, y0, dt):
            rejected.append(len(starts) - 1)

    t1 = torch.tensor(0.3)
    sol = torchnode.solve(
        Field(),
        torch.ones(1),
        torch.stack([torch.tensor(0.0), t1]),
        rtol=1e-5,
        atol=1e-7,
        options={"first_step": 0.3},
    )
    assert sol.stats.n_rejected >= 1 and rejected
    for i in rejected:
        assert starts[i + 1].item() == starts[i].item()
    assert {t.dtype for t in seen} == {torch.float32}
    assert all(0.0 <= t.item() <= t1.item() for t in seen)
    assert max(t.item() for t in seen) == t1.item()
    assert float(sol.ys[-1, 0]) == pytest.approx(math.cos(0.3), abs=2e-2)


def test_float32_time_grid_ends_exactly_at_a_large_t1():
    seen = []

    def f(t, y):
        seen.append(t.item())
        return torch.stack([y[1], -y[0]])

    t = torch.tensor([0.0, 1000.0])
    sol = torchnode.solve(f, torch.tensor([1.0, 0.0]), t, rtol=1e-5, atol=1e-7)
    assert max(seen) == 1000.0 and min(seen) == 0.0
    assert sol.stats.n_steps < 5000


def test_step_callbacks_are_called_for_every_attempt():
    calls = {"step": 0, "accept": 0, "reject": 0}
    times = []

    class Stiffish(torch.nn.Module):
        def forward(self, t, y):
            return -30 * (y - torch.sin(t))

        def callback_step(self, t0, y0, dt):
            calls["step"] += 1
            times.append(float(t0))

        def callback_accept_step(self, t0, y0, dt):
            calls["accept"] += 1

        def callback_reject_step(self, t0, y0, dt):
            calls["reject"] += 1

    sol = torchnode.solve(
        Stiffish(),
        ONE,
        torch.tensor([0.0, 2.0], dtype=F64),
        options={"first_step": 1.0},
    )
    s = sol.stats
    assert calls == {"step": s.n_steps, "accept": s.n_accepted, "reject": s.n_rejected}
    assert s.n_rejected >= 1
    assert all(0.0 <= x <= 2.0 for x in times)


# --- options ---------------------------------------------------------------


def test_unknown_option_names_the_closest_valid_key():
    with pytest.raises(ValueError, match="did you mean 'max_num_steps'"):
        torchnode.odeint(_decay, ONE, T01, options={"max_num_step": 10})


def test_option_of_another_method_warns_at_the_callers_line():
    with pytest.warns(UserWarning, match="'step_size' has no effect") as record:
        torchnode.odeint(_decay, ONE, T01, options={"step_size": 0.1})
    assert record[0].filename == __file__


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown method 'dopri6'") as info:
        torchnode.odeint(_decay, ONE, T01, method="dopri6")
    for name in torchnode.methods():
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"max_step": 0}, "max_step"),
        ({"first_step": 0.0}, "first_step"),
        ({"min_step": -1.0}, "min_step"),
        ({"safety": 2.0}, "safety"),
        ({"max_num_steps": 0}, "max_num_steps"),
        ({"jump_t": "x"}, "jump_t"),
        ({"min_step": 0.5, "max_step": 0.1}, "min_step"),
    ],
)
def test_out_of_range_option_value_is_named(options, name):
    with pytest.raises((ValueError, TypeError), match=name):
        torchnode.odeint(_decay, ONE, T01, options=options)


@pytest.mark.parametrize("step", [0.0, -0.1, math.inf, "x"])
def test_bad_fixed_step_size_is_named(step):
    with pytest.raises((ValueError, TypeError), match="step_size"):
        torchnode.odeint(_decay, ONE, T01, method="rk4", options={"step_size": step})


# --- malformed input -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"t": torch.zeros(2, 2, dtype=F64)}, ValueError, "t must be 1-D"),
        ({"t": torch.tensor([0.0, 1.0, 0.5], dtype=F64)}, ValueError, "monotonic"),
        ({"t": torch.tensor([0, 1])}, TypeError, "t must be a floating point"),
        ({"t": torch.tensor([0.0], dtype=F64)}, ValueError, "at least 2 times"),
        ({"t": torch.tensor([0.0, math.nan], dtype=F64)}, ValueError, "finite"),
        ({"y0": torch.tensor([1])}, TypeError, "y0 must be floating point"),
        ({"y0": torch.tensor([], dtype=F64)}, ValueError, "at least one element"),
        ({"rtol": -1.0}, ValueError, "rtol must be finite and >= 0"),
        ({"atol": math.nan}, ValueError, "atol must be finite"),
    ],
)
def test_malformed_input_is_rejected_naming_the_problem(kwargs, error, pattern):
    args = {"func": _decay, "y0": ONE, "t": T01} | kwargs
    with pytest.raises(error, match=pattern):
        torchnode.odeint(**args)


def test_func_returning_wrong_shape_is_named():
    with pytest.raises(ValueError, match="shape"):
        torchnode.odeint(lambda t, y: torch.zeros(3, dtype=F64), ONE, T01)


def test_func_returning_wrong_dtype_is_named():
    with pytest.raises(TypeError, match="dtype"):
        torchnode.odeint(lambda t, y: torch.zeros(1), ONE, T01)


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_nan_in_y0_raises_solver_error(method):
    y0 = torch.tensor([1.0, math.nan], dtype=F64)
    with pytest.raises(SolverError, match="nan"):
        torchnode.odeint(_decay, y0, T01, method=method, options=_options(method))


def test_finiteness_check_names_the_entry_and_survives_an_overflowing_sum():
    from torchnode._driver.diagnose import describe_non_finite

    big = torch.tensor([3e38, 3e38, 1.0])  # finite float32, sum overflows
    assert describe_non_finite("y", big) is None
    assert describe_non_finite("y", torch.tensor([1.0, -math.inf, 2.0])) == (
        "y[1] = -inf"
    )
    assert describe_non_finite("y", torch.tensor([math.inf, -math.inf])) == (
        "y[0] = inf"
    )
    assert describe_non_finite("y", torch.tensor([0.0, 1.0, math.nan])) == (
        "y[2] = nan"
    )
    # A solve through such a state is not mistaken for a blow-up.
    out = torchnode.odeint(lambda t, y: torch.zeros_like(y), big, T01.float())
    assert torch.equal(out[-1], big)


# --- failures ----------------------------------------------------------------


def test_step_budget_error_gives_time_step_and_remedy():
    with pytest.raises(SolverError) as info:
        torchnode.odeint(
            _decay,
            ONE,
            torch.tensor([0.0, 100.0], dtype=F64),
            options={"max_num_steps": 5},
        )
    err = info.value
    assert err.reason == "max_num_steps"
    assert 0 < err.t < 100 and err.dt > 0
    assert f"t = {err.t!r}" in str(err)
    assert "max_num_steps" in str(err) and "Raise" in str(err)


def test_blow_up_ends_in_step_underflow_near_the_singularity():
    # y' = y^2, y(0) = 1 blows up at t = 1.
    with pytest.raises(SolverError) as info:
        torchnode.odeint(lambda t, y: y * y, ONE, torch.tensor([0.0, 2.0], dtype=F64))
    err = info.value
    assert err.reason in ("dt_underflow", "non_finite")
    assert err.t == pytest.approx(1.0, abs=1e-3)
    assert "singularity" in str(err)


@pytest.mark.parametrize("method", sorted(FIXED_GRID_NAMES))
def test_fixed_grid_blow_up_raises_instead_of_returning_nan(method):
    with pytest.raises(SolverError, match="non-finite") as info:
        torchnode.odeint(
            lambda t, y: y * y,
            ONE,
            torch.tensor([0.0, 2.0], dtype=F64),
            method=method,
            options={"step_size": 0.01},
        )
    assert info.value.reason == "non_finite"
    assert 0.9 < info.value.t <= 2.0


def test_non_finite_field_value_mid_solve_is_reported():
    def f(t, y):
        return -y if float(t) < 0.5 else y * math.inf

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SolverError) as info:
            torchnode.odeint(f, ONE, T01)
    assert info.value.reason == "non_finite"
    assert info.value.t == pytest.approx(0.5, abs=0.05)
    assert "steps; the candidate state y1[0] = " in str(info.value)


def test_time_span_that_overflows_is_rejected():
    t = torch.tensor([-1.7e308, 1.7e308], dtype=F64)
    with pytest.raises(ValueError, match="overflows"):
        torchnode.odeint(_decay, ONE, t)


def test_fixed_grid_with_absurd_step_count_is_rejected_at_once():
    t = torch.tensor([0.0, 1e300], dtype=F64)
    with pytest.raises(ValueError, match="step_size"):
        torchnode.odeint(_decay, ONE, t, method="rk4", options={"step_size": 0.1})


def test_a_normal_step_on_a_huge_interval_is_not_an_underflow():
    # The solve is stability-bound, so it ends on the step budget, far along.
    with pytest.raises(SolverError) as info:
        torchnode.odeint(
            _decay,
            ONE,
            torch.tensor([0.0, 1e300], dtype=F64),
            options={"max_num_steps": 50},
        )
    assert info.value.reason == "max_num_steps"
    assert info.value.t > 5.0


def test_subnormal_interval_is_solved_without_underflow_error():
    y = torchnode.odeint(_decay, ONE, torch.tensor([0.0, 5e-324], dtype=F64))
    assert float(y[-1]) == 1.0
