"""Terminal events: root location, gradients of the event time, shapes."""

import math

import pytest
import torch
import torchdiffeq

import torchnode

F64 = torch.float64


def _f(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def _t(*values):
    return torch.tensor(values, dtype=F64)


# -- a step may jump over two roots -----------------------------------------


def _cubic_slope(x, y):
    # y = (x + 6)(x^2 - 4): roots -6, -2, 2.
    return (3 * x**2 + 12 * x - 4) * torch.ones_like(y)


@pytest.mark.parametrize(
    ("x0", "y0", "expected"), [(-5.0, 21.0, -2.0), (-8.0, -120.0, -6.0)]
)
def test_first_of_several_roots_in_one_step(x0, y0, expected):
    event_t, ys = torchnode.odeint(
        _cubic_slope, _t(y0), _t(x0, 4.0), event_fn=lambda t, y: y[0]
    )
    assert abs(_f(event_t) - expected) < 1e-6
    assert abs(_f(ys[-1, 0])) < 1e-6


# -- an event on a 1e-13 s time scale ---------------------------------------

E_CHARGE = 1.602176634e-19  # C (exact, SI 2019)
M_ELECTRON = 9.1093837139e-31  # kg (CODATA 2022)
E_FIELD = 1e9  # V/m


def test_event_on_a_tiny_time_scale():
    accel = E_CHARGE * E_FIELD / M_ELECTRON
    t_star = math.sqrt(2 * 1e-6 / accel)
    assert abs(t_star / 1.0663611125041267e-13 - 1) < 1e-12

    def field(t, y):
        return torch.stack([y[1], torch.full_like(y[1], accel)])

    event_t, _ = torchnode.odeint(
        field,
        torch.zeros(2, dtype=F64),
        _t(0.0, 1.51 * t_star),
        event_fn=lambda t, y: y[0] - 1e-6,
    )
    assert abs(_f(event_t) / t_star - 1) < 1e-6


# -- closed-form event times and their gradients ----------------------------


def _decay_case(interface, **kwargs):
    k = torch.tensor(0.7, dtype=F64, requires_grad=True)
    c = torch.tensor(0.5, dtype=F64, requires_grad=True)
    y0 = torch.tensor([2.0], dtype=F64, requires_grad=True)
    t0 = torch.tensor(0.3, dtype=F64, requires_grad=True)
    event_t, ys = torchnode.odeint_event(
        lambda t, y: -k * y,
        y0,
        t0,
        event_fn=lambda t, y: y[0] - c,
        odeint_interface=interface,
        rtol=1e-11,
        atol=1e-13,
        **kwargs,
    )
    exact = t0 + torch.log(y0[0] / c) / k
    inputs = (y0, k, c, t0)
    got = torch.autograd.grad(event_t, inputs, retain_graph=True)
    want = torch.autograd.grad(exact, inputs)
    return event_t, exact, got, want, ys


@pytest.mark.parametrize(
    "interface", [torchnode.odeint, torchnode.odeint_adjoint], ids=["direct", "adj"]
)
def test_decay_event_time_and_gradients(interface):
    event_t, exact, got, want, ys = _decay_case(interface)
    assert abs(_f(event_t - exact)) < 1e-9
    for g, w in zip(got, want):
        assert abs(_f(g) - _f(w)) < 1e-8 * max(1.0, abs(_f(w)))
    # The state at the event is pinned to c: dy_e/dc = 1.
    assert abs(_f(ys[-1, 0]) - 0.5) < 1e-9


def test_bouncing_ball_fall_time_and_gradient():
    g = torch.tensor(9.81, dtype=F64, requires_grad=True)
    h0 = torch.tensor(2.0, dtype=F64, requires_grad=True)
    y0 = torch.stack([h0, torch.zeros((), dtype=F64)])

    def field(t, y):
        return torch.stack([y[1], -g * torch.ones_like(y[1])])

    event_t, ys = torchnode.odeint_event(
        field, y0, torch.tensor(0.0, dtype=F64), event_fn=lambda t, y: y[0]
    )
    exact = torch.sqrt(2 * h0 / g)
    assert abs(_f(event_t - exact)) < 1e-12
    dh, dg = torch.autograd.grad(event_t, (h0, g), retain_graph=True)
    eh, eg = torch.autograd.grad(exact, (h0, g))
    assert abs(_f(dh - eh)) < 1e-10
    assert abs(_f(dg - eg)) < 1e-10
    # Impact speed sqrt(2 g h0) and its gradient.
    v = ys[-1, 1]
    assert abs(_f(v) + math.sqrt(2 * 9.81 * 2.0)) < 1e-9
    (dv,) = torch.autograd.grad(v, h0)
    assert abs(_f(dv) + math.sqrt(9.81 / (2 * 2.0))) < 1e-9


@pytest.mark.parametrize(
    "interface", [torchnode.odeint, torchnode.odeint_adjoint], ids=["direct", "adj"]
)
def test_start_time_gradient_with_the_start_among_the_outputs(interface):
    # ys[0] is y0 and does not move with t0; only what the solve carries does.
    def field(t, y):
        return torch.stack([y[1], -1.3 * y[0] + 0.1 * t])

    y0 = torch.tensor([1.0, 0.1], dtype=F64)

    def loss(t0):
        kw = {"adjoint_params": ()} if interface is torchnode.odeint_adjoint else {}
        event_t, ys = torchnode.odeint_event(
            field,
            y0,
            t0,
            event_fn=lambda t, y: y[0] - 0.2,
            odeint_interface=interface,
            rtol=1e-12,
            atol=1e-12,
            **kw,
        )
        return ys[0].sum() + ys[-1, 1] + event_t

    t0 = torch.tensor(0.3, dtype=F64, requires_grad=True)
    (got,) = torch.autograd.grad(loss(t0), t0)
    h = 1e-5
    with torch.no_grad():
        fd = (loss(t0 + h) - loss(t0 - h)) / (2 * h)
    assert abs(_f(got) - _f(fd)) < 1e-7


@pytest.mark.parametrize("gradient", ["direct", "adjoint", "checkpoint"])
def test_state_gradient_every_mode(gradient):
    from torchnode._events import odeint_with_event

    y0 = torch.tensor([2.0], dtype=F64, requires_grad=True)
    event_t, ys = odeint_with_event(
        lambda t, y: -y,
        y0,
        _t(0.0, 1.0),
        rtol=1e-10,
        atol=1e-12,
        method="dopri5",
        options=None,
        event_fn=lambda t, y: t - 1.0,
        gradient=gradient,
    )
    assert abs(_f(event_t) - 1.0) < 1e-12
    (dy0,) = torch.autograd.grad(ys[-1, 0], y0)
    assert abs(_f(dy0) - math.exp(-1.0)) < 1e-8


def test_vector_event_earliest_component_wins():
    event_t, _ = torchnode.odeint(
        lambda t, y: -y,
        _t(2.0),
        _t(0.0, 1.0),
        event_fn=lambda t, y: torch.stack([y - 0.5, y - 1.5]),
    )
    assert abs(_f(event_t) - math.log(2 / 1.5)) < 1e-8


def test_reverse_time_and_fixed_grid():
    event_t, _ = torchnode.odeint_event(
        lambda t, y: y,
        _t(2.0),
        torch.tensor(0.0, dtype=F64),
        event_fn=lambda t, y: y[0] - 0.5,
        reverse_time=True,
    )
    assert abs(_f(event_t) + math.log(4.0)) < 1e-6
    event_t, _ = torchnode.odeint(
        lambda t, y: -y,
        _t(2.0),
        _t(0.0, 1.0),
        method="rk4",
        options={"step_size": 0.01},
        event_fn=lambda t, y: y[0] - 0.5,
    )
    assert abs(_f(event_t) - math.log(4.0)) < 1e-8


def test_no_event_is_a_bounded_search():
    with pytest.raises(torchnode.SolverError, match="no event") as info:
        torchnode.odeint(
            lambda t, y: torch.cos(t) * torch.ones_like(y),
            _t(0.0),
            _t(0.0, 1.0),
            options={"max_num_steps": 200},
            event_fn=lambda t, y: y[0] - 5.0,
        )
    assert info.value.reason == "event_search"


def test_bad_t_is_named():
    with pytest.raises(ValueError, match="exactly 2 times"):
        torchnode.odeint(
            lambda t, y: -y, _t(1.0), _t(0.0, 1.0, 2.0), event_fn=lambda t, y: y
        )


# -- shapes match torchdiffeq ------------------------------------------------


@pytest.mark.parametrize("tuple_state", [False, True])
def test_odeint_event_shapes_match_torchdiffeq(tuple_state):
    t0 = torch.tensor(0.0, dtype=F64)
    if tuple_state:
        y0 = (_t(2.0), torch.zeros(3, dtype=F64))

        def field(t, y):
            return (-y[0], y[0].expand(3))

        def event_fn(t, y):
            return y[0][0] - 0.5

    else:
        y0 = torch.tensor([[2.0, 1.0]], dtype=F64)

        def field(t, y):
            return -y

        def event_fn(t, y):
            return y[0, 0] - 0.5

    ours = torchnode.odeint_event(field, y0, t0, event_fn=event_fn)
    theirs = torchdiffeq.odeint_event(field, y0, t0, event_fn=event_fn)
    assert ours[0].shape == theirs[0].shape
    assert ours[0].dtype == theirs[0].dtype
    if tuple_state:
        assert [s.shape for s in ours[1]] == [s.shape for s in theirs[1]]
    else:
        assert ours[1].shape == theirs[1].shape
    assert abs(_f(ours[0]) - _f(theirs[0])) < 1e-6
