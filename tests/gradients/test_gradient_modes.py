"""Gradients in every mode: against finite differences, against each other, and
the backward pass's cost."""

import math

import pytest
import torch

import torchnode

F64 = torch.float64
MODES = ["direct", "adjoint", "checkpoint"]
A = torch.tensor([[-0.4, 1.0], [-1.0, -0.2]], dtype=F64)


def _solve_fn(mode: str):
    def fn(y0, k, t):
        sol = torchnode.solve(
            lambda t, y: k * (A @ y) + torch.sin(t) * y[:1].expand(2) * 0.1,
            y0,
            t,
            rtol=1e-12,
            atol=1e-12,
            gradient=mode,
            adjoint_rtol=1e-12,
            adjoint_atol=1e-12,
        )
        return sol.ys

    return fn


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_wrt_y0_parameter_and_times(mode):
    y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
    k = torch.tensor(0.8, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=F64, requires_grad=True)
    # The adjoint and the time gradients are those of the exact flow: they
    # match finite differences to the solve's tolerance, not to round-off.
    assert torch.autograd.gradcheck(
        _solve_fn(mode), (y0, k, t), eps=1e-6, atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize("mode", MODES)
def test_time_gradients_share_the_start_evaluation_and_are_counted(mode):
    seen = []

    def decay(t, y):
        seen.append(float(t))
        return -y

    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64, requires_grad=True)
    y0 = torch.tensor([1.0], dtype=F64, requires_grad=True)
    sol = torchnode.solve(decay, y0, t, gradient=mode, rtol=1e-9, atol=1e-11)
    assert sol.stats.nfe == len(seen)
    # f(t0, y0) serves the solve and both time terms; direct mode differentiates
    # the solve's own evaluation, so the time terms make one without a graph.
    assert seen.count(0.0) == (2 if mode == "direct" else 1)
    sol.ys.sum().backward()
    with torch.no_grad():
        # No graph, no time gradients: no evaluations spent on them.
        n_plain = len(seen)
        torchnode.solve(decay, y0, t, gradient=mode, rtol=1e-9, atol=1e-11)
        time_terms = len(t) if mode == "direct" else len(t) - 1
        assert len(seen) - n_plain == sol.stats.nfe - time_terms
    # L = sum_i y0 exp(-(t_i - t0)): dL/dt_i = -y(t_i), dL/dt0 = y(0.5) + y(1).
    e = torch.exp(-torch.tensor([0.5, 1.0], dtype=F64))
    expected = torch.stack([e.sum(), -e[0], -e[1]])
    torch.testing.assert_close(t.grad, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3"])
def test_checkpoint_gradient_equals_direct_on_an_adaptive_solve(method):
    grads = {}
    for mode in ("direct", "checkpoint"):
        y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
        k = torch.tensor(0.8, dtype=F64, requires_grad=True)
        sol = torchnode.solve(
            lambda t, y, k=k: k * (A @ y) - y**3,
            y0,
            torch.tensor([0.0, 0.3, 0.9, 2.0], dtype=F64),
            method=method,
            rtol=1e-6,
            atol=1e-8,
            gradient=mode,
        )
        (sol.ys**2).sum().backward()
        grads[mode] = torch.cat([y0.grad, k.grad.reshape(1)])
    torch.testing.assert_close(grads["checkpoint"], grads["direct"], rtol=0, atol=1e-12)


def _adjoint_vs_direct(tol: float) -> float:
    out = {}
    for mode in ("direct", "adjoint"):
        k = torch.tensor(0.8, dtype=F64, requires_grad=True)
        y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
        sol = torchnode.solve(
            lambda t, y, k=k: k * (A @ y) - y**3,
            y0,
            torch.tensor([0.0, 1.0, 3.0], dtype=F64),
            rtol=1e-10,
            atol=1e-10,
            gradient=mode,
            adjoint_rtol=tol,
            adjoint_atol=tol,
        )
        sol.ys.sum().backward()
        out[mode] = torch.cat([y0.grad, k.grad.reshape(1)])
    return float((out["adjoint"] - out["direct"]).abs().max())


def test_adjoint_approaches_direct_as_its_tolerance_tightens():
    errors = [_adjoint_vs_direct(tol) for tol in (1e-4, 1e-6, 1e-8)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[0] < 1e-2 and errors[2] < 1e-6


def test_seminorm_costs_fewer_backward_evaluations_with_the_same_gradient():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)
    ).double()
    y0 = torch.randn(8, 4, dtype=F64)
    results = {}
    for norm in (None, "seminorm"):
        net.zero_grad()
        sol = torchnode.solve(
            lambda t, y: net(y),
            y0,
            torch.tensor([0.0, 2.0], dtype=F64),
            rtol=1e-6,
            atol=1e-8,
            gradient="adjoint",
            adjoint_options=None if norm is None else {"norm": norm},
        )
        sol.ys[-1].pow(2).sum().backward()
        grad = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
        results[norm] = (sol.stats.nfe_backward, grad)
    assert results["seminorm"][0] < results[None][0]
    torch.testing.assert_close(
        results["seminorm"][1], results[None][1], rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("mode", ["adjoint", "checkpoint"])
def test_backward_counters_are_filled_after_backward(mode):
    k = torch.tensor(0.5, dtype=F64, requires_grad=True)
    sol = torchnode.solve(
        lambda t, y: -k * y,
        torch.ones(1, dtype=F64),
        torch.tensor([0.0, 1.0], dtype=F64),
        gradient=mode,
    )
    assert sol.stats.nfe_backward == 0 and sol.stats.n_steps_backward == 0
    sol.ys[-1].sum().backward()
    assert sol.stats.nfe_backward > 0 and sol.stats.n_steps_backward > 0
    if mode == "checkpoint":
        assert sol.stats.n_steps_backward == sol.stats.n_accepted
    assert float(k.grad) == pytest.approx(-math.exp(-0.5), rel=1e-6)


@pytest.mark.parametrize("mode", ["adjoint", "checkpoint"])
@pytest.mark.parametrize(
    ("method", "options"),
    [("dopri5", None), ("rk4", {"step_size": 0.1}), ("explicit_adams", None)],
)
def test_finding_the_parameters_costs_no_field_evaluation(mode, method, options):
    # The evaluation whose graph shows the field's tensors is the solve's first
    # one, so the forward pass calls the field exactly as often as 'direct'.
    if mode == "checkpoint" and method == "explicit_adams":
        pytest.skip("a multistep method cannot be checkpointed")
    k = torch.tensor(0.5, dtype=F64, requires_grad=True)
    calls = {}
    for m in ("direct", mode):
        count = [0]

        def field(t, y, count=count):
            count[0] += 1
            return -k * y + torch.cos(t)

        sol = torchnode.solve(
            field,
            torch.ones(3, dtype=F64),
            torch.tensor([0.0, 0.5, 1.0], dtype=F64),
            method=method,
            options=options,
            gradient=m,
        )
        assert sol.stats.nfe == count[0]
        calls[m] = count[0]
        sol.ys.sum().backward()
    assert calls[mode] == calls["direct"]


def _mlp_adjoint(adjoint_options, adjoint_rtol=None, n_out=2, adjoint_atol=None):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)
    ).double()
    y0 = torch.randn(8, 4, dtype=F64)
    sol = torchnode.solve(
        lambda t, y: net(y),
        y0,
        torch.linspace(0.0, 2.0, n_out, dtype=F64),
        rtol=1e-6,
        atol=1e-8,
        gradient="adjoint",
        adjoint_rtol=adjoint_rtol,
        adjoint_atol=adjoint_atol,
        adjoint_options=adjoint_options,
    )
    sol.ys.pow(2).sum().backward()
    grad = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    return sol.stats, grad


@pytest.mark.parametrize("n_out", [2, 5])
def test_backward_solve_starts_from_the_forward_step(n_out):
    # Each backward interval starts with the step the forward controller chose
    # at that output time instead of the initial-step heuristic, which costs an
    # evaluation per interval (more with the full norm, where the parameter
    # adjoint starts at zero and the heuristic's first step comes out tiny).
    seeded, g_seeded = _mlp_adjoint(None, n_out=n_out)
    guessed, g_guessed = _mlp_adjoint({"first_step": None}, n_out=n_out)
    assert seeded.nfe_backward < guessed.nfe_backward
    torch.testing.assert_close(g_seeded, g_guessed, rtol=1e-4, atol=1e-6)
    reference = _mlp_adjoint(None, adjoint_rtol=1e-10, n_out=n_out)[1]
    torch.testing.assert_close(g_seeded, reference, rtol=1e-4, atol=1e-6)


@pytest.fixture
def first_steps(monkeypatch) -> list:
    """The first step each backward interval is given (None: the heuristic)."""
    from torchnode._gradients import adjoint

    seen: list = []
    original = adjoint._backward_problem

    def spy(*args, **kwargs):
        seen.append(args[5])
        return original(*args, **kwargs)

    monkeypatch.setattr(adjoint, "_backward_problem", spy)
    return seen


def test_backward_first_step_scales_with_a_looser_adjoint_tolerance(first_steps):
    # The forward step is scaled by (tol_back / tol_forward) ** (1 / 5) for
    # dopri5 (the smaller of the rtol and atol ratios), so a backward solve
    # 1000 times looser starts with a step 1000 ** (1 / 5) times longer.
    tight, g_tight = _mlp_adjoint(None)
    loose, g_loose = _mlp_adjoint(None, adjoint_rtol=1e-3, adjoint_atol=1e-5)
    (h_tight, h_loose) = first_steps
    assert h_tight is not None and h_tight > 0
    assert h_loose / h_tight == pytest.approx(1000 ** (1 / 5), rel=1e-12)
    assert loose.nfe_backward < tight.nfe_backward
    torch.testing.assert_close(g_loose, g_tight, rtol=1e-2, atol=1e-4)


def test_an_explicit_backward_first_step_is_kept():
    fixed, _ = _mlp_adjoint({"first_step": 1e-3})
    seeded, _ = _mlp_adjoint(None)
    assert fixed.nfe_backward > seeded.nfe_backward


def test_a_forward_first_step_is_not_carried_to_the_backward_solve(first_steps):
    # The forward's first_step sizes its start at t0; the backward solve starts
    # at T with the forward controller's step there, whatever began the forward.
    net = torch.nn.Linear(2, 2).double()
    y0 = torch.tensor([[1.0, -0.5]], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    sol = torchnode.solve(
        lambda t, y: torch.tanh(net(y)),
        y0,
        t,
        rtol=1e-6,
        atol=1e-8,
        gradient="adjoint",
        options={"first_step": 1e-7},
    )
    sol.ys[-1].sum().backward()
    assert first_steps[0] is not None and first_steps[0] > 1e-3
    assert sol.stats.n_steps_backward < sol.stats.n_steps


def test_backward_full_norm_takes_each_parameter_tensor_on_its_own():
    # torchdiffeq's default adjoint norm: the largest RMS over y, a and every
    # parameter's piece of g, so a small tensor (a bias) is not averaged away
    # by a large one; the seminorm leaves the pieces of g out.
    from torchnode._driver.field import Layout
    from torchnode._gradients.adjoint import AdjointSettings, _norm

    layout = Layout([torch.Size([2])], F64, False)
    params = [torch.zeros(3, 3, dtype=F64), torch.zeros(1, dtype=F64)]
    ratio = torch.zeros(2 + 2 + 10, dtype=F64)
    ratio[-1] = 2.0  # the bias's error; the weight's is zero
    settings = AdjointSettings(0.0, 0.0, None, {}, None, None)
    assert float(_norm(settings, layout, params)(ratio)) == pytest.approx(2.0)
    settings.norm = "seminorm"
    assert float(_norm(settings, layout, params)(ratio)) == 0.0
    ratio[1] = 3.0
    assert float(_norm(settings, layout, params)(ratio)) == pytest.approx(3 / 2**0.5)


@pytest.mark.parametrize(
    "mode", [*MODES, "adjoint_params"], ids=[*MODES, "adjoint-explicit"]
)
def test_closure_over_a_tensor_computed_from_a_parameter(mode):
    # The field reaches w only through the caller's graph of A, which every
    # step's backward product goes through, whether w is found by walking the
    # graph or listed in adjoint_params.
    w = torch.tensor([0.7, -0.2], dtype=F64, requires_grad=True)
    listed = {"adjoint_params": [w]} if mode == "adjoint_params" else {}
    mode = "adjoint" if listed else mode
    a = torch.outer(w, w) - torch.eye(2, dtype=F64)
    y0 = torch.tensor([1.0, 0.3], dtype=F64)
    t = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    ys = torchnode.solve(
        lambda t, y: a @ y,
        y0,
        t,
        rtol=1e-10,
        atol=1e-12,
        gradient=mode,
        adjoint_rtol=1e-10,
        adjoint_atol=1e-12,
        **listed,
    ).ys
    (got,) = torch.autograd.grad((ys[1:] ** 2).sum(), w)
    w2 = w.detach().requires_grad_()
    a2 = torch.outer(w2, w2) - torch.eye(2, dtype=F64)
    exact = [torch.linalg.matrix_exp(a2 * s) @ y0 for s in (0.5, 2.0)]
    (want,) = torch.autograd.grad(sum((y**2).sum() for y in exact), w2)
    assert torch.allclose(got, want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("adjoint_norm", [None, "seminorm"])
def test_backward_solve_measures_y_and_a_with_the_forward_norm(adjoint_norm):
    # As in torchdiffeq: a norm given to the forward solve (here the max norm,
    # on the caller's [3, 2] shape) also measures the state and its adjoint.
    seen: list[tuple[int, ...]] = []

    def max_norm(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return x.abs().max()

    w = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.5], [0.2, -0.3], [0.0, 1.0]], dtype=F64)
    t = torch.tensor([0.0, 0.7, 1.5], dtype=F64)
    adjoint_options = {} if adjoint_norm is None else {"norm": adjoint_norm}
    ys = torchnode.odeint_adjoint(
        lambda t, y: y @ w.T,
        y0,
        t,
        rtol=1e-9,
        atol=1e-11,
        options={"norm": max_norm},
        adjoint_params=(w,),
        adjoint_options=adjoint_options,
    )
    n_forward = len(seen)
    ys[1:].sum().backward()
    assert len(seen) > n_forward
    assert set(seen) == {(3, 2)}
    # The exact gradient: y(t) = y0 exp(W^T t), so d/dW of the sum is known
    # through autograd on the matrix exponential.
    w_ref = w.detach().clone().requires_grad_(True)
    ref = sum((y0 @ torch.linalg.matrix_exp(w_ref.T * s)).sum() for s in t[1:])
    (g_ref,) = torch.autograd.grad(ref, w_ref)
    torch.testing.assert_close(w.grad, g_ref, rtol=1e-6, atol=1e-8)
