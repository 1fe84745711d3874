"""Rosenbrock (linearly implicit) methods for stiff problems, and ``method='auto'``.

``rodas4`` is the L-stable, stiffly accurate Rosenbrock method of order 4 with an
embedded method of order 3 and a continuous extension of order 3 of Hairer and
Wanner (Solving ODEs II, VI.4, and their code RODAS, coefficient set
``METH = 1``). A step from ``(t0, y0)`` with ``h = t1 - t0`` solves six linear
systems with one matrix ``W = I / (h gamma) - J``, ``J = df/dy(t0, y0)``:

    W u_i = f(t0 + c_i h, y0 + sum_j a_ij u_j) + h d_i df/dt + sum_j (c_ij / h) u_j

so it costs one Jacobian, one LU factorisation and five new field evaluations
(plus one for ``f(t1, y1)``, the next step's first stage). ``y1`` is the sixth
stage argument plus ``u_6``; ``u_6`` itself is the error estimate.

The Jacobian comes from autograd on the flat state (all rows at once by batched
vector-Jacobian products), with ``df/dt`` from the same evaluation; under
autograd it is built with ``create_graph=True``, so ``gradient='direct'`` and
``'checkpoint'`` differentiate the discrete solve exactly. A field whose output
carries no graph (for instance the adjoint system) gets a forward-difference
Jacobian instead.

``auto`` starts with ``dopri5`` and watches Hairer's stiffness test (Solving ODEs
II, IV.2, as in his code DOPRI5): ``h |k7 - k6| / |y7 - y6|`` estimates
``h rho(J)``, and 15 consecutive steps with it above 3.25 (dopri5's real-axis
stability limit is 3.3) switch to ``rodas4``. Under ``rodas4`` the spectral
radius of the Jacobian already at hand is estimated by a few power iterations;
15 consecutive steps with ``h rho < 1.5`` (well inside dopri5's stability
region) switch back. ``Stats.n_switches`` counts the switches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._driver.adaptive import RunResult, integrate_adaptive
from .._driver.problem import Problem
from .rk import RKStepper, StepResult
from .tableaus import TABLEAUS

__all__ = ["ROSENBROCK_METHODS", "AutoStepper", "RosenbrockStepper", "jacobian"]

# Hairer and Wanner, RODAS (rodas.f, subroutine RODCOE, METH = 1); Solving ODEs
# II, VI.4. Stage times c_i, df/dt coefficients d_i, stage arguments a_ij and
# the coefficients c_ij of u_j / h, all in the code's transformed variables u.
GAMMA = 0.25
_C = (0.0, 0.386, 0.21, 0.63, 1.0, 1.0)
_D = (0.25, -0.1043, 0.1035, -0.3620000000000023e-01, 0.0, 0.0)
_A51_54 = (
    0.1221224509226641e01,
    0.6019134481288629e01,
    0.1253708332932087e02,
    -0.6878860361058950e00,
)
_A = (
    (),
    (0.1544000000000000e01,),
    (0.9466785280815826e00, 0.2557011698983284e00),
    (0.3314825187068521e01, 0.2896124015972201e01, 0.9986419139977817e00),
    _A51_54,
    (*_A51_54, 1.0),
)
_CU = (
    (),
    (-0.5668800000000000e01,),
    (-0.2430093356833875e01, -0.2063599157091915e00),
    (-0.1073529058151375e00, -0.9594562251023355e01, -0.2047028614809616e02),
    (
        0.7496443313967647e01,
        -0.1024680431464352e02,
        -0.3399990352819905e02,
        0.1170890893206160e02,
    ),
    (
        0.8083246795921522e01,
        -0.7981132988064893e01,
        -0.3152159432874371e02,
        0.1631930543123136e02,
        -0.6058818238834054e01,
    ),
)
# y1 - y0 = sum_j m_j u_j (the method is stiffly accurate: y1 is the sixth
# stage argument plus u_6).
_M = (*_A51_54, 1.0, 1.0)
# Dense output: y(t0 + theta h) = y0 + theta (y1 - y0) + theta (1 - theta)
# (sum_j d2_j u_j + theta sum_j d3_j u_j).
_D2 = (
    0.1012623508344586e02,
    -0.7487995877610167e01,
    -0.3480091861555747e02,
    -0.7992771707568823e01,
    0.1025137723295662e01,
    0.0,
)
_D3 = (
    -0.6762803392801253e00,
    0.6087714651680015e01,
    0.1643084320892478e02,
    0.2476722511418386e02,
    -0.6594389125716872e01,
    0.0,
)
N_STAGES = 6

# Hairer's stiffness test for dopri5 and the switching rule of method='auto'.
DOPRI5_STIFF_LIMIT = 3.25
STIFF_STEPS = 15
NONSTIFF_LIMIT = 1.5
NONSTIFF_STEPS = 15
_POWER_ITERS = 6


@dataclass(frozen=True)
class MethodInfo:
    """What the adaptive loop reads of a method: its name and orders."""

    name: str
    order: int
    error_order: int
    b_error2: None = None
    fsal: bool = False


RODAS4 = MethodInfo("rodas4", 4, 3)


def _vjp_rows(out, inputs, create: bool):
    """All rows of the Jacobians of ``out [N]`` with respect to ``inputs``."""
    n = out.shape[0]
    eye = torch.eye(n, dtype=out.dtype, device=out.device)
    try:
        return torch.autograd.grad(
            out,
            inputs,
            eye,
            is_grads_batched=True,
            create_graph=create,
            retain_graph=True,
            allow_unused=True,
        )
    except RuntimeError:
        # A field that vmap cannot batch over: one row at a time.
        rows = [
            torch.autograd.grad(
                out,
                inputs,
                eye[i],
                create_graph=create,
                retain_graph=True,
                allow_unused=True,
            )
            for i in range(n)
        ]
        return tuple(
            None if rows[0][j] is None else torch.stack([r[j] for r in rows])
            for j in range(len(inputs))
        )


def _fd_jacobian(field, t: float, y0: torch.Tensor, f0: torch.Tensor, span: float):
    """Forward-difference ``df/dy`` and ``df/dt`` (N + 1 field evaluations)."""
    with torch.no_grad():
        y = y0.detach()
        f = f0.detach()
        eps = math.sqrt(torch.finfo(y.real.dtype).eps)
        cols = []
        for j in range(y.shape[0]):
            d = eps * max(abs(float(y[j])), 1e-5)
            yj = y.clone()
            yj[j] += d
            cols.append((field(t, yj) - f) / d)
        jac = torch.stack(cols, 1)
        dt = eps * max(abs(t), abs(span), 1e-5)
        fx = (field(t + dt, y) - f) / dt
    return jac, fx


def jacobian(
    field, t: float, y0: torch.Tensor, f0: torch.Tensor, span: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(df/dy [N, N], df/dt [N] or None)`` of a flat field at ``(t, y0)``.

    By autograd from one field evaluation; with a graph (``create_graph``) when
    autograd is recording and ``f0`` carries one, so that the solution can be
    differentiated through ``J``. ``df/dt`` is ``None`` for a field that does not
    depend on ``t``. Falls back to forward differences when the field's output
    carries no graph.
    """
    create = torch.is_grad_enabled() and f0.requires_grad
    layout = field.layout
    field.nfe += 1
    if field.observer is not None:
        field.observer(t)
    with torch.enable_grad():
        # Differentiating at y0 itself would make autograd walk the whole graph
        # of the solve so far at every step; a fresh leaf keeps it to one
        # evaluation, and _Reattach routes the dependence on y0 back.
        y = y0.detach().requires_grad_()
        tt = field.time(t).detach().requires_grad_()
        out = layout.flatten(field.func(tt, layout.unflatten(y)), field.work_dtype)
        if not out.requires_grad:
            field.nfe -= 1
            return _fd_jacobian(field, t, y0, f0, span)
        gy, gt = _vjp_rows(out, (y, tt), create)
    jac = out.new_zeros((out.shape[0], out.shape[0])) if gy is None else gy
    fx = None if gt is None else gt.reshape(-1).to(out.dtype)
    if create and y0.requires_grad and jac.requires_grad:
        if fx is None:
            (jac,) = _Reattach.apply(y0, y, jac)
        else:
            jac, fx = _Reattach.apply(y0, y, jac, fx)
    return jac, fx


class _Reattach(torch.autograd.Function):
    """Passes ``outs``, computed at the leaf ``y_leaf``, on unchanged, and makes
    them depend on ``y0`` as they do on ``y_leaf`` (first derivatives only)."""

    @staticmethod
    def forward(ctx, y0, y_leaf, *outs):
        ctx.y_leaf = y_leaf
        ctx.outs = outs
        return tuple(o.detach().clone() for o in outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        with torch.enable_grad():
            (g_y0,) = torch.autograd.grad(
                ctx.outs, ctx.y_leaf, grads, retain_graph=True, allow_unused=True
            )
        return (g_y0, None, *grads)


class _Factorised:
    """``W^-1 b`` from one factorisation of ``W`` per step.

    Without a graph: ``lu_factor`` and ``lu_solve``. Under autograd: the
    inverse (itself from an LU factorisation) and matrix-vector products,
    whose backward is a few matrix products; the backward of ``lu_solve`` and
    of triangular solves runs ``tril``/``triu`` per call, which on small
    matrices costs far more than the solve.
    """

    def __init__(self, w: torch.Tensor) -> None:
        self.graph = w.requires_grad
        if self.graph:
            self.inv, info = torch.linalg.inv_ex(w)
            self.ok = int(info) == 0 and bool(torch.isfinite(self.inv.detach()).all())
        else:
            self.lu, self.piv, info = torch.linalg.lu_factor_ex(w)
            self.ok = int(info) == 0

    def __call__(self, b: torch.Tensor) -> torch.Tensor:
        if self.graph:
            return self.inv @ b
        return torch.linalg.lu_solve(self.lu, self.piv, b[:, None])[:, 0]


class RosenbrockStepper:
    """Steps of ``rodas4`` with the interface of :class:`RKStepper`.

    The Jacobian is kept while the step start ``(t0, y0)`` is unchanged, so a
    rejected step costs a new LU factorisation but no new Jacobian.
    """

    tableau = RODAS4

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        if dtype.is_complex:
            raise TypeError(
                "method 'rodas4' needs a real state, but got dtype "
                f"{dtype}; split the state into real and imaginary parts"
            )

        def vec(values) -> torch.Tensor:
            return torch.tensor(np.asarray(values, dtype=np.float64)).to(
                dtype=dtype, device=device
            )

        self._a = [vec(r) for r in _A]
        self._cu = [vec(r) for r in _CU]
        self._m = vec(_M)
        self._dense_rows = vec([_D2, _D3])
        self._dtype = dtype
        self._device = device
        self._jac_key: tuple = (None, None, None)
        self._jac: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.stats: Any = None
        # The latest Jacobian, for the switching rule of 'auto'.
        self.last_jac: torch.Tensor | None = None

    def bind(self, stats, controller) -> None:
        """Counts Jacobians and factorisations in the loop's ``stats``."""
        self.stats = stats

    def _jacobian(self, field, t0: float, t1: float, y0, f0):
        key = (t0, y0, torch.is_grad_enabled() and f0.requires_grad)
        cached = self._jac_key
        if (
            self._jac is not None
            and cached[0] == key[0]
            and cached[1] is key[1]
            and cached[2] == key[2]
        ):
            return self._jac
        self._jac = jacobian(field, t0, y0, f0, t1 - t0)
        self._jac_key = key
        self.last_jac = self._jac[0]
        if self.stats is not None:
            self.stats.n_jac += 1
        return self._jac

    def step(
        self,
        field,
        t0: float,
        t1: float,
        y0: torch.Tensor,
        f0: torch.Tensor,
        perturb: bool = False,
    ) -> StepResult:
        """Attempts the step from ``(t0, y0)`` to ``t1``; ``f0 = field(t0, y0)``."""
        h = t1 - t0
        jac, fx = self._jacobian(field, t0, t1, y0, f0)
        n = y0.shape[0]
        w = torch.diagflat(jac.new_full((n,), 1.0 / (h * GAMMA))) - jac
        solve = _Factorised(w)
        if self.stats is not None:
            self.stats.n_lu += 1
        k = y0.new_zeros((N_STAGES, n))
        if not solve.ok:
            # W is singular: a non-finite error makes the loop shrink the step.
            k = k + math.nan
            nan = y0 + math.nan
            return StepResult(nan, None, nan, k, None)
        for i in range(N_STAGES):
            if i == 0:
                f_i = f0
            else:
                y_i = torch.addmv(y0, k[:i].T, self._a[i])
                if _C[i] == 1.0:
                    f_i = field(t1, y_i, -1 if perturb else 0)
                else:
                    f_i = field(t0 + _C[i] * h, y_i, 0)
            rhs = f_i
            if fx is not None and _D[i] != 0.0:
                rhs = rhs + (h * _D[i]) * fx
            if i > 0:
                rhs = torch.addmv(rhs, k[:i].T, self._cu[i], alpha=1.0 / h)
            k[i] = solve(rhs)
        y1 = torch.addmv(y0, k.T, self._m)
        return StepResult(y1, None, k[N_STAGES - 1], k, None)

    def dense_stages(self, field, t0, t1, y0, k, f1) -> torch.Tensor:
        """``[3, N]``: ``y1 - y0`` and the two correction terms."""
        return torch.cat([(k.T @ self._m)[None], self._dense_rows @ k])

    def dense(self, y0, stages, t0: float, t1: float, t: float) -> torch.Tensor:
        """The continuous extension (order 3) at ``t`` inside ``[t0, t1]``."""
        dt = t1 - t0
        th = (t - t0) / dt if dt != 0 else 1.0
        weights = torch.tensor(
            [th, th * (1.0 - th), th * th * (1.0 - th)],
            dtype=self._dtype,
            device=self._device,
        )
        return torch.addmv(y0, stages.T, weights)


def _spectral_radius(jac: torch.Tensor, v: torch.Tensor, iters: int):
    """A few power iterations on ``jac`` from ``v``; returns (estimate, vector)."""
    rho = 0.0
    for _ in range(iters):
        jv = jac @ v
        rho = float(torch.linalg.vector_norm(jv))
        if not math.isfinite(rho) or rho == 0.0:
            return rho, v
        v = jv / rho
    return rho, v


class AutoStepper:
    """``method='auto'``: dopri5 while the problem is not stiff, rodas4 while it is.

    The choice of each attempted step is remembered by its ``(t0, t1)`` so that a
    replayed step (checkpointed gradients) and dense output use the same method.
    """

    tableau = MethodInfo("auto", 5, 4)
    # It starts as dopri5 and takes dopri5's steps until it switches
    # (see PIController).
    damped_start = False

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        self.explicit = RKStepper(TABLEAUS["dopri5"], dtype, device)
        self.implicit = RosenbrockStepper(dtype, device)
        tab = self.explicit.tableau
        a6 = np.asarray(tab.a[tab.n_stages - 2], dtype=np.float64)
        diff = np.zeros(tab.n_stages)
        diff[: len(a6)] = a6
        diff -= np.asarray(tab.b, dtype=np.float64)
        # y7 - y6 = -dt * sum_j (a_6j - b_j) k_j; k7 - k6 are the last two rows.
        self._y_diff = torch.tensor(diff).to(dtype=dtype, device=device)
        self.stiff = False
        self.count = 0
        self.used: dict[tuple[float, float], bool] = {}
        self.stats: Any = None
        self.controller: Any = None
        self._v: torch.Tensor | None = None

    def bind(self, stats, controller) -> None:
        self.stats = stats
        self.controller = controller
        self.implicit.bind(stats, controller)

    def _switch(self) -> None:
        self.stiff = not self.stiff
        self.count = 0
        if self.stats is not None:
            self.stats.n_switches += 1
        if self.controller is not None:
            info = RODAS4 if self.stiff else self.explicit.tableau
            order = min(info.order, info.error_order or info.order)
            self.controller.set_order(order + 1)

    def step(self, field, t0, t1, y0, f0, perturb: bool = False) -> StepResult:
        key = (t0, t1)
        replay = self.used.get(key)
        stiff = self.stiff if replay is None else replay
        self.used[key] = stiff
        if stiff:
            res = self.implicit.step(field, t0, t1, y0, f0, perturb)
        else:
            res = self.explicit.step(field, t0, t1, y0, f0, perturb)
        if replay is None:
            self._watch(res, t1 - t0)
        return res

    @torch.no_grad()
    def _watch(self, res: StepResult, h: float) -> None:
        if self.stiff:
            jac = self.implicit.last_jac
            if jac is None:
                return
            jac = jac.detach()
            if self._v is None or self._v.shape[0] != jac.shape[0]:
                g = torch.Generator().manual_seed(0)
                v = torch.randn(jac.shape[0], generator=g, dtype=torch.float64)
                self._v = (v / torch.linalg.vector_norm(v)).to(jac)
            rho, self._v = _spectral_radius(jac, self._v, _POWER_ITERS)
            calm = math.isfinite(rho) and abs(h) * rho < NONSTIFF_LIMIT
            self.count = self.count + 1 if calm else 0
            if self.count >= NONSTIFF_STEPS:
                self._switch()
            return
        k = res.k
        dk = float(torch.linalg.vector_norm(k[-1] - k[-2]))
        dy = abs(h) * float(torch.linalg.vector_norm(k.T @ self._y_diff))
        stiff = dy > 0 and abs(h) * dk / dy > DOPRI5_STIFF_LIMIT
        self.count = self.count + 1 if stiff else 0
        if self.count >= STIFF_STEPS:
            self._switch()

    def _method(self, t0: float, t1: float):
        stiff = self.used.get((t0, t1), self.stiff)
        return self.implicit if stiff else self.explicit

    def dense_stages(self, field, t0, t1, y0, k, f1) -> torch.Tensor:
        return self._method(t0, t1).dense_stages(field, t0, t1, y0, k, f1)

    def dense(self, y0, stages, t0: float, t1: float, t: float) -> torch.Tensor:
        return self._method(t0, t1).dense(y0, stages, t0, t1, t)


def integrate_rodas4(problem: Problem, **kw) -> RunResult:
    """Solves ``problem`` with ``rodas4``; keywords as :func:`integrate_adaptive`."""
    stepper = RosenbrockStepper(problem.y0.dtype, problem.y0.device)
    return integrate_adaptive(problem, None, stepper=stepper, **kw)


def integrate_auto(problem: Problem, **kw) -> RunResult:
    """Solves ``problem`` with dopri5, switching to rodas4 where it is stiff."""
    stepper = AutoStepper(problem.y0.dtype, problem.y0.device)
    return integrate_adaptive(problem, None, stepper=stepper, **kw)


ROSENBROCK_METHODS = {"rodas4": integrate_rodas4, "auto": integrate_auto}
