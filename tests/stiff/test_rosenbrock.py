"""rodas4 and method='auto': accuracy on stiff test problems, orders, dense
output, stiffness switching and gradients."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from stiff_problems import HIRES_END, ROBERTSON_1E5, hires, robertson, van_der_pol

import torchnode
from torchnode._driver.problem import normalize
from torchnode._numerics.rosenbrock import RosenbrockStepper, jacobian

F64 = torch.float64


vdp = van_der_pol(1000.0)

# scipy Radau, rtol 1e-12, atol 1e-14, analytic Jacobian; the span crosses the
# first relaxation jump (near t = 807).
VDP_1000 = [-1.863646254808142, 0.0007535430865435375]


def _rel_err(y, ref) -> torch.Tensor:
    ref = torch.tensor(ref, dtype=F64)
    return ((y - ref) / ref).abs()


def test_registered():
    assert "rodas4" in torchnode.methods()
    assert "auto" in torchnode.methods()


def test_robertson():
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1e5], dtype=F64)
    sol = torchnode.solve(robertson, y0, t, method="rodas4", rtol=1e-6, atol=1e-10)
    assert (_rel_err(sol.ys[-1], ROBERTSON_1E5) < 1e-4).all()
    st = sol.stats
    # Measured: 200 steps, 198 Jacobians (one per accepted step: a rejected
    # step keeps its Jacobian), one LU factorisation per attempted step.
    assert st.n_steps <= 300
    assert st.n_jac == st.n_accepted
    assert st.n_lu == st.n_steps
    assert st.n_switches == 0


def test_robertson_odeint():
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1.0, 1e3, 1e5], dtype=F64)
    ys = torchnode.odeint(robertson, y0, t, method="rodas4", rtol=1e-6, atol=1e-10)
    assert ys.shape == (4, 3)
    assert torch.allclose(ys.sum(-1), torch.ones(4, dtype=F64), atol=1e-9)
    assert (_rel_err(ys[-1], ROBERTSON_1E5) < 1e-4).all()


def test_van_der_pol_mu_1000():
    y0 = torch.tensor([2.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1000.0], dtype=F64)
    sol = torchnode.solve(vdp, y0, t, method="rodas4", rtol=1e-6, atol=1e-8)
    assert (_rel_err(sol.ys[-1], VDP_1000) < 1e-4).all()
    assert sol.stats.n_steps <= 730  # measured 487


def test_hires():
    y0 = torch.tensor([1, 0, 0, 0, 0, 0, 0, 0.0057], dtype=F64)
    t = torch.tensor([0.0, 321.8122], dtype=F64)
    sol = torchnode.solve(hires, y0, t, method="rodas4", rtol=1e-5, atol=1e-9)
    assert (_rel_err(sol.ys[-1], HIRES_END) < 1e-4).all()
    assert sol.stats.n_steps <= 200


def _smooth(t, y):
    # Non-autonomous, nonlinear and mildly stiff: exercises df/dt.
    return torch.stack(
        [-5.0 * (y[0] - torch.cos(t)), y[0] * y[1] * torch.sin(t) - y[1] ** 2]
    )


def _reference(t_end: float = 1.0):
    y0 = torch.tensor([0.3, 0.7], dtype=F64)
    t = torch.tensor([0.0, t_end], dtype=F64)
    return y0, torchnode.solve(
        _smooth, y0, t, method="dopri8", rtol=1e-13, atol=1e-13, dense=True
    )


def test_local_orders_of_step_estimate_and_dense_output():
    y0, ref = _reference()
    p = normalize(_smooth, y0, torch.tensor([0.0, 1.0], dtype=F64), 1e-6, 1e-6, {})
    stepper = RosenbrockStepper(F64, torch.device("cpu"))
    errs = []
    for j in range(3, 7):
        h = 0.4 * 2.0**-j
        res = stepper.step(p.field, 0.0, h, p.y0, p.field(0.0, p.y0))
        stages = stepper.dense_stages(p.field, 0.0, h, p.y0, res.k, None)
        mid = stepper.dense(p.y0, stages, 0.0, h, 0.37 * h)
        errs.append(
            (
                float((res.y1 - ref.evaluate(h)).norm()),
                float(res.y_error.norm()),
                float((mid - ref.evaluate(0.37 * h)).norm()),
            )
        )
    slopes = [
        [math.log2(a / b) for a, b in zip(e0, e1)]
        for e0, e1 in itertools.pairwise(errs)
    ]
    step, estimate, dense = slopes[-1]
    assert step == pytest.approx(5.0, abs=0.25)  # order 4
    assert estimate == pytest.approx(4.0, abs=0.25)  # embedded order 3
    assert dense == pytest.approx(4.0, abs=0.25)  # continuous extension order 3


def test_global_order_on_fixed_steps():
    y0, ref = _reference()
    t = torch.tensor([0.0, 1.0], dtype=F64)
    errs = []
    for h in (0.1, 0.05, 0.025):
        with pytest.warns(torchnode.ToleranceWarning):
            sol = torchnode.solve(
                _smooth,
                y0,
                t,
                method="rodas4",
                rtol=1e6,
                atol=1e6,
                options={"first_step": h, "ifactor": 1.0},
            )
        assert sol.stats.n_steps == round(1 / h)
        errs.append(float((sol.ys[-1] - ref.ys[-1]).norm()))
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errs)]
    assert orders[-1] == pytest.approx(4.0, abs=0.2)


def test_dense_output():
    y0, ref = _reference(2.0)
    t = torch.tensor([0.0, 2.0], dtype=F64)
    sol = torchnode.solve(
        _smooth, y0, t, method="rodas4", rtol=1e-8, atol=1e-10, dense=True
    )
    tq = torch.linspace(0.0, 2.0, 57, dtype=F64)
    err = (sol.evaluate(tq) - ref.evaluate(tq)).abs().max()
    assert float(err) < 1e-6
    # Output times inside steps use the same interpolant.
    t_out = torch.linspace(0.0, 2.0, 9, dtype=F64)
    ys = torchnode.odeint(_smooth, y0, t_out, method="rodas4", rtol=1e-8, atol=1e-10)
    assert float((ys - ref.evaluate(t_out)).abs().max()) < 1e-6


def test_auto_switches_on_robertson_where_dopri5_fails():
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1e5], dtype=F64)
    with pytest.raises(torchnode.SolverError, match="looks stiff"):
        torchnode.solve(
            robertson,
            y0,
            t,
            method="dopri5",
            rtol=1e-6,
            atol=1e-10,
            options={"max_num_steps": 2000},
        )
    sol = torchnode.solve(
        robertson,
        y0,
        t,
        method="auto",
        rtol=1e-6,
        atol=1e-10,
        options={"max_num_steps": 2000},
    )
    assert (_rel_err(sol.ys[-1], ROBERTSON_1E5) < 1e-4).all()
    assert sol.stats.n_switches >= 1
    assert sol.stats.n_jac > 0
    assert sol.stats.n_steps < 400  # measured 221


def test_auto_never_switches_on_a_non_stiff_problem():
    def oscillator(t, y):
        return torch.stack([y[1], -y[0] + 0.1 * torch.sin(t)])

    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.linspace(0.0, 20.0, 5, dtype=F64)
    auto = torchnode.solve(oscillator, y0, t, method="auto", rtol=1e-6, atol=1e-8)
    plain = torchnode.solve(oscillator, y0, t, method="dopri5", rtol=1e-6, atol=1e-8)
    assert auto.stats.n_switches == 0
    assert auto.stats.n_jac == 0
    assert auto.stats.n_steps == plain.stats.n_steps
    assert torch.equal(auto.ys, plain.ys)


def test_auto_dense_output_across_a_switch():
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1e2], dtype=F64)
    sol = torchnode.solve(
        robertson, y0, t, method="auto", rtol=1e-6, atol=1e-10, dense=True
    )
    assert sol.stats.n_switches >= 1
    tq = torch.tensor([0.01, 0.5, 3.0, 40.0], dtype=F64)
    got = sol.evaluate(tq)
    ref = torchnode.solve(
        robertson,
        y0,
        torch.cat([t[:1], tq]),
        method="rodas4",
        rtol=1e-9,
        atol=1e-13,
    ).ys[1:]
    assert torch.allclose(got, ref, rtol=1e-4, atol=5e-6)


def _linear_field(a):
    def f(t, y):
        return a @ y + 0.1 * torch.sin(t) * y**2

    return f


@pytest.mark.parametrize("gradient", ["direct", "checkpoint"])
@pytest.mark.parametrize("method", ["rodas4", "auto"])
def test_gradcheck(method, gradient):
    t = torch.tensor([0.0, 0.05, 0.08 if method == "auto" else 0.1], dtype=F64)
    # Fixed steps (huge tolerances, no growth) make the solve a smooth function
    # of its inputs. For 'auto' h * 1000 = 3.27 is just inside dopri5's
    # stability region and above the stiffness threshold 3.25, so the solve
    # switches to rodas4 after 15 steps.
    h = 0.02 if method == "rodas4" else 0.00327
    opts = {"first_step": h, "ifactor": 1.0}

    def fn(y0, a):
        return torchnode.solve(
            _linear_field(a),
            y0,
            t,
            method=method,
            rtol=1e3,
            atol=1e3,
            gradient=gradient,
            options=opts,
        ).ys

    y0 = torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True)
    a = torch.tensor([[-1000.0, 1.0], [0.5, -2.0]], dtype=F64, requires_grad=True)
    with pytest.warns(torchnode.ToleranceWarning):
        sol = torchnode.solve(
            _linear_field(a), y0, t, method=method, rtol=1e3, atol=1e3, options=opts
        )
    if method == "auto":
        assert sol.stats.n_switches == 1
    with pytest.warns(torchnode.ToleranceWarning):
        assert torch.autograd.gradcheck(fn, (y0, a), atol=1e-6, rtol=1e-5)


def test_checkpoint_matches_direct_at_working_tolerances():
    t = torch.tensor([0.0, 0.1, 0.3], dtype=F64)
    grads = []
    for gradient in ("direct", "checkpoint"):
        y0 = torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True)
        a = torch.tensor([[-1000.0, 1.0], [0.5, -2.0]], dtype=F64, requires_grad=True)
        sol = torchnode.solve(
            _linear_field(a),
            y0,
            t,
            method="rodas4",
            rtol=1e-6,
            atol=1e-9,
            gradient=gradient,
        )
        grads.append(torch.autograd.grad(sol.ys.square().sum(), (y0, a)))
        if gradient == "checkpoint":
            # Replayed steps are not counted as forward work.
            assert sol.stats.n_jac == sol.stats.n_accepted
    for g_direct, g_ckpt in zip(*grads):
        assert torch.allclose(g_direct, g_ckpt, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["rodas4", "auto"])
def test_adjoint_is_refused_with_a_clear_message(method):
    a = torch.tensor([[-1000.0, 1.0], [0.5, -2.0]], dtype=F64, requires_grad=True)
    y0 = torch.tensor([1.0, 0.5], dtype=F64)
    t = torch.tensor([0.0, 0.1], dtype=F64)
    with pytest.raises(ValueError, match="gradient='checkpoint'"):
        torchnode.solve(_linear_field(a), y0, t, method=method, gradient="adjoint")


def test_inference_under_grad_mode_records_no_graph():
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 10.0], dtype=F64)
    ys = torchnode.odeint(robertson, y0, t, method="rodas4", rtol=1e-5, atol=1e-9)
    assert not ys.requires_grad


def test_jacobian_autograd_and_difference_fallback():
    a = torch.tensor([[-3.0, 1.0], [2.0, -5.0]], dtype=F64)

    def f(t, y):
        return a @ y + t * torch.tensor([1.0, 2.0], dtype=F64)

    b = torch.tensor([1.0, 2.0], dtype=F64)

    def f_no_graph(t, y):
        # The output carries no graph: forward differences are used.
        out = (a @ y.detach()).numpy() + float(t.detach()) * b.numpy()
        return torch.from_numpy(out)

    y0 = torch.tensor([0.4, -0.2], dtype=F64)
    for func, tol in ((f, 1e-14), (f_no_graph, 1e-6)):
        p = normalize(func, y0, torch.tensor([0.0, 1.0], dtype=F64), 1e-6, 1e-6, {})
        f0 = p.field(0.5, p.y0)
        jac, fx = jacobian(p.field, 0.5, p.y0, f0, 0.1)
        assert torch.allclose(jac, a, atol=tol)
        assert fx is not None
        assert torch.allclose(fx, torch.tensor([1.0, 2.0], dtype=F64), atol=tol)


def test_complex_state_is_refused():
    y0 = torch.tensor([1.0 + 1.0j], dtype=torch.complex128)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(TypeError, match="real state"):
        torchnode.solve(lambda t, y: -y, y0, t, method="rodas4")


def test_float32_robertson():
    y0 = torch.tensor([1.0, 0.0, 0.0])
    t = torch.tensor([0.0, 1e3])
    sol = torchnode.solve(robertson, y0, t, method="rodas4", rtol=1e-4, atol=1e-8)
    assert sol.ys.dtype == torch.float32
    ref = torchnode.solve(
        robertson, y0.double(), t.double(), method="rodas4", rtol=1e-9, atol=1e-13
    ).ys[-1]
    assert torch.allclose(sol.ys[-1].double(), ref, rtol=1e-2, atol=1e-7)


@pytest.mark.parametrize("method", ["rodas4", "auto"])
def test_events_and_per_sample_are_refused(method):
    y0 = torch.tensor([1.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(ValueError, match="events are not supported"):
        torchnode.odeint(
            lambda t, y: -y, y0, t, method=method, event_fn=lambda t, y: y[0] - 0.5
        )
    with pytest.raises(ValueError, match="per-sample"):
        torchnode.solve(lambda t, y: -y, y0[None], t, method=method, per_sample=True)
