"""The adjoint method (Chen et al. 2018): gradients from a backward solve.

Between consecutive output times the backward pass integrates, from ``t_i`` to
``t_{i-1}``, the augmented state ``(y, a, g)``::

    dy/dt = f(t, y)
    da/dt = -a^T df/dy                      a = dL/dy
    dg/dt = -a^T df/dtheta                  g -> dL/dtheta at t0

adding ``dL/dy(t_{i-1})`` to ``a`` at each output time and restarting ``y`` from
the stored forward output. Memory does not grow with the number of steps. The
result approximates the gradient of the exact flow; for a discretised solve it
differs from ``gradient='direct'`` by the solve's error (an ``O(h^p)`` difference
on fixed grids; see the README).

Norms of the backward solve: by default the error is measured on all three
parts, as the largest RMS over their tensors (each part of ``y`` and ``a``, each
parameter's piece of ``g``: torchdiffeq's choice). ``{'norm': 'seminorm'}``
drops ``g`` from the norm (Kidger, Chen and Lyons 2021, "Hey, that's not an
ODE"): ``g`` never feeds back into ``y`` or ``a``, so its error cannot spoil
theirs, and steps are chosen for ``y`` and ``a`` alone. It is safe whenever the
parameter gradient needs no more accuracy than the state's adjoint; it is not
when ``g`` is a sum of many nearly cancelling terms (then use the full norm).

First step of each backward interval: the step the forward controller proposed
at ``t_i``, scaled to the backward tolerances, instead of the initial-step
heuristic (an evaluation per interval, and with the full norm a tiny step,
since ``g`` starts at zero). ``{'first_step': h}`` in the backward options
fixes it; ``{'first_step': None}`` asks for the heuristic. A ``first_step``
among the forward options is not carried over to the backward solve.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._driver.adaptive import RunResult
from .._driver.field import Field, Layout
from .._driver.methods import MethodSpec, resolve_method, run_problem
from .._driver.problem import (
    Problem,
    _tolerance,
    check_method_options,
)
from .._numerics.norms import make_mixed_rms
from .params import collect_params, run_without_graph

__all__ = ["AdjointSettings", "solve_adjoint"]


@dataclass
class AdjointSettings:
    """Settings of the backward solve, with the forward solve's as defaults."""

    rtol: float | torch.Tensor
    atol: float | torch.Tensor
    spec: MethodSpec
    options: dict[str, Any]
    norm: Any
    params: Sequence[torch.Tensor] | None

    @staticmethod
    def make(
        problem: Problem,
        spec: MethodSpec,
        rtol,
        atol,
        method,
        options: dict | None,
        params: Sequence[torch.Tensor] | None,
    ) -> AdjointSettings:
        adj_spec = spec if method is None else resolve_method(method)
        if options is None:
            opts = dict(problem.options) if adj_spec.name == spec.name else {}
            opts.pop("norm", None)
            # The forward's first step sizes its start at t0; the backward solve
            # starts at the last output time, from the forward's step there.
            opts.pop("first_step", None)
            # The backward field differentiates inside (a vector-Jacobian
            # product per call), which a compiled step cannot hold in one graph.
            opts.pop("compile", None)
        else:
            opts = check_method_options(adj_spec.name, options, adj_spec.options)
        norm = opts.pop("norm", None)
        if isinstance(norm, str) and norm != "seminorm":
            raise ValueError(
                f"adjoint_options['norm'] must be 'seminorm' or a callable, but got "
                f"{norm!r}"
            )
        real = problem.y0.real.dtype
        parts = _state_parts(problem)
        r = (
            problem.rtol
            if rtol is None
            else _tolerance("adjoint_rtol", rtol, parts, problem.layout, real)
        )
        a = (
            problem.atol
            if atol is None
            else _tolerance("adjoint_atol", atol, parts, problem.layout, real)
        )
        if params is not None:
            params = list(params)
        return AdjointSettings(r, a, adj_spec, opts, norm, params)


def _state_parts(problem: Problem) -> list[torch.Tensor]:
    y = problem.layout.unflatten(problem.y0)
    return list(y) if isinstance(y, tuple) else [y]


def _extend(tol, n_params: int):
    """State tolerance ``[N]`` (or float) to the augmented state ``[2N + P]``."""
    if not isinstance(tol, torch.Tensor):
        return tol
    fill = tol.min().expand(n_params)
    return torch.cat([tol, tol, fill])


class _Augmented:
    """The field of the augmented system on a flat ``[2N + P]`` state."""

    def __init__(self, problem: Problem, params: Sequence[torch.Tensor]) -> None:
        self.func = problem.field.func
        self.layout = problem.layout
        self.work = problem.y0.dtype
        self.n = problem.y0.numel()
        self.params = list(params)
        # A tensor computed before the solve (a buffer from an encoder, or a
        # leaf reached through one) shares the caller's graph, which each
        # vector-Jacobian product must leave intact; plain parameters do not,
        # and not retaining lets compiled backward passes free their buffers.
        self.retain = any(p.grad_fn is not None for p in self.params) or bool(
            getattr(problem.field, "captured_through_graph", False)
        )

    def __call__(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        n = self.n
        with torch.enable_grad():
            y = z[:n].detach().requires_grad_()
            f = self.layout.flatten(self.func(t, self.layout.unflatten(y)), self.work)
            # Products with -a come out negated: one pass over a instead of
            # one over every piece.
            vjps = torch.autograd.grad(
                f,
                (y, *self.params),
                -z[n : 2 * n],
                allow_unused=True,
                retain_graph=self.retain,
            )
        pieces = [f.detach(), _or_zeros(vjps[0], y)]
        pieces += [
            _or_zeros(g, p).reshape(-1).to(self.work)
            for g, p in zip(vjps[1:], self.params)
        ]
        return torch.cat(pieces)


def _or_zeros(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g


def _norm(
    settings: AdjointSettings,
    layout: Layout,
    params,
    forward_norm: Callable | None = None,
) -> Callable:
    """The backward solve's error norm on the flat ``(y, a, g)``.

    By default the largest RMS over every tensor of the augmented state: each
    part of ``y`` and of ``a`` (one for a plain state) and each parameter's
    piece of ``g``, torchdiffeq's default for the adjoint, so that a small
    tensor (a bias) is not drowned by a large one. The seminorm drops the
    pieces of ``g``. ``forward_norm``, a norm the caller gave the forward solve
    (``options['norm']``), measures ``y`` and ``a`` in both, as in torchdiffeq.
    """
    state = list(layout.numels)
    pieces = [p.numel() for p in params]
    if settings.norm in (None, "seminorm") and forward_norm is not None:
        return _with_forward_norm(
            forward_norm, layout.numel, pieces, settings.norm is None
        )
    if settings.norm is None:
        return make_mixed_rms([*state, *state, *pieces])
    if settings.norm == "seminorm":
        keep = [True] * (2 * len(state)) + [False] * len(pieces)
        return make_mixed_rms([*state, *state, *pieces], include=keep)
    user: Callable = settings.norm
    n = layout.numel
    sizes = [n, n, sum(pieces)]

    def norm(ratio: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(user(tuple(torch.split(ratio, sizes))))

    return norm


def _with_forward_norm(
    forward: Callable, n: int, pieces: list[int], with_g: bool
) -> Callable:
    """``max(forward(y), forward(a), [mixed RMS of g])``, ``n`` the state's
    size: the forward solve's norm on the state and its adjoint."""
    g_norm = make_mixed_rms(pieces) if with_g and sum(pieces) > 0 else None

    def norm(ratio: torch.Tensor) -> torch.Tensor:
        y, a = ratio[:n], ratio[n : 2 * n]
        out = torch.maximum(torch.as_tensor(forward(y)), torch.as_tensor(forward(a)))
        if g_norm is not None:
            out = torch.maximum(out, torch.as_tensor(g_norm(ratio[2 * n :])))
        return out

    return norm


def _representative(tol: float | torch.Tensor) -> float:
    return float(tol.max()) if isinstance(tol, torch.Tensor) else float(tol)


def _first_steps(
    problem: Problem, settings: AdjointSettings, res: RunResult
) -> list[float | None]:
    """The backward solve's first step from each output time (``None``: the
    initial-step heuristic, which costs an evaluation).

    The forward controller's step at ``t_i`` (``RunResult.step_at_outputs``)
    already measured the field's scale there; with other tolerances it is
    scaled by ``(tol_back / tol_forward) ** (1 / k)``, the local error being
    ``O(h^k)`` with ``k`` the error order plus one. An explicit ``first_step``
    in the backward options (``None`` included: the heuristic) wins.
    """
    n_out = len(problem.t)
    known = res.step_at_outputs
    explicit = "first_step" in settings.options
    if not settings.spec.adaptive or explicit or len(known) != n_out:
        return [None] * n_out
    ratios = []
    for back, fwd in ((settings.rtol, problem.rtol), (settings.atol, problem.atol)):
        b, f = _representative(back), _representative(fwd)
        if f > 0:
            ratios.append(b / f)
    ratio = min(ratios, default=1.0)
    scale = 1.0
    if ratio != 1.0:
        tab = settings.spec.tableau
        if tab is None or not ratio > 0:
            return [None] * n_out
        k = min(tab.order, tab.error_order or tab.order) + 1
        scale = ratio ** (1.0 / k)
    out: list[float | None] = []
    for h in known:
        h1 = None if h is None else h * scale
        out.append(h1 if h1 is not None and math.isfinite(h1) and h1 > 0 else None)
    return out


def _backward_problem(
    problem: Problem,
    settings: AdjointSettings,
    params,
    z0,
    t_pair,
    first_step: float | None = None,
) -> Problem:
    n = problem.y0.numel()
    n_params = z0.numel() - 2 * n
    layout = Layout([z0.shape], z0.dtype, False)
    fld = Field(
        _Augmented(problem, params),
        layout,
        problem.field.t_dtype,
        z0.dtype,
        z0.device,
    )
    fld.checked = True
    return Problem(
        field=fld,
        y0=z0,
        t=t_pair,
        t_tensor=problem.t_tensor,
        rtol=_extend(settings.rtol, n_params),
        atol=_extend(settings.atol, n_params),
        norm=_norm(
            settings,
            problem.layout,
            params,
            problem.norm if problem.options.get("norm") is not None else None,
        ),
        layout=layout,
        options=(
            settings.options
            if first_step is None
            else {**settings.options, "first_step": first_step}
        ),
    )


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, problem, settings, holder, y0, *params):
        # The solve runs on a detached copy: a field that differentiates
        # itself must see a state with no history, or its own autograd call
        # would reach the caller's graph instead of its input.
        run_on = dataclasses.replace(problem, y0=y0.detach())

        def run() -> RunResult:
            return run_problem(spec, run_on, dense=holder["dense"])

        res = run_without_graph(run)
        holder["res"] = res
        ys = torch.stack(res.ys)
        ctx.problem, ctx.settings, ctx.res = problem, settings, res
        ctx.params = params
        ctx.ys = ys
        return ys

    @staticmethod
    def backward(ctx, grad_ys):
        problem: Problem = ctx.problem
        params = ctx.params
        times = problem.t
        ys = ctx.ys
        n = problem.y0.numel()
        stats = ctx.res.stats
        work = problem.y0.dtype
        a = grad_ys[-1]
        g = torch.zeros(
            sum(p.numel() for p in params), dtype=work, device=problem.y0.device
        )
        first = _first_steps(problem, ctx.settings, ctx.res)
        with torch.no_grad():
            for i in range(len(times) - 1, 0, -1):
                if times[i] != times[i - 1]:
                    z0 = torch.cat([ys[i], a, g])
                    sub = _backward_problem(
                        problem,
                        ctx.settings,
                        params,
                        z0,
                        [times[i], times[i - 1]],
                        first[i],
                    )
                    if problem.field.grad_inside:
                        sub.field.grad_inside = True
                    res = run_problem(ctx.settings.spec, sub)
                    stats.nfe_backward += res.stats.nfe
                    stats.n_steps_backward += res.stats.n_steps
                    z1 = res.ys[-1]
                    a, g = z1[n : 2 * n], z1[2 * n :]
                a = a + grad_ys[i - 1]
        grads = []
        offset = 0
        for p in params:
            piece = g[offset : offset + p.numel()]
            offset += p.numel()
            if piece.is_complex() and not p.is_complex():
                piece = piece.real
            grads.append(piece.reshape(p.shape).to(p.dtype))
        return (None, None, None, None, a, *grads)


def solve_adjoint(
    spec: MethodSpec, problem: Problem, settings: AdjointSettings, *, dense: bool
):
    """Solves with adjoint gradients; returns flat outputs and the run."""
    from .time_grad import run_with_time_gradients

    params, f0 = collect_params(problem, settings.params, "adjoint")
    problem = dataclasses.replace(problem, f0=f0)
    holder: dict = {"dense": dense}

    def run(y0: torch.Tensor) -> torch.Tensor:
        return _Adjoint.apply(spec, problem, settings, holder, y0, *params)

    ys = run_with_time_gradients(problem, run, holder)
    return ys, holder["res"]
