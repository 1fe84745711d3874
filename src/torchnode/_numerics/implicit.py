"""Implicit Runge-Kutta methods for stiff problems.

Fixed-grid methods with torchdiffeq's names: ``implicit_euler``,
``implicit_midpoint``, ``trapezoid``, ``sdirk2``, ``trbdf2`` (diagonally
implicit: one Newton solve of size ``N`` per stage) and ``radauIIA3``, ``gl4``,
``radauIIA5``, ``gl6`` (fully implicit: one Newton solve of size ``s N`` per
step). Their options are the fixed-grid ones plus ``max_iters``: at most that
many Newton iterations per stage solve (torchdiffeq iterates a fixed point up
to ``max_iters`` times; here the iteration is Newton's, so far fewer are
needed). A solve that does not converge raises :class:`SolverError` instead of
continuing with an unconverged stage.

The adaptive method ``kvaerno5`` is Kvaerno's L-stable, stiffly accurate
ESDIRK of order 5 with an embedded order-4 solution. It runs in the same
adaptive loop as the explicit pairs (controller, outputs, statistics); a step
whose Newton iteration fails is rejected and retried with a step five times
shorter. Its dense output is cubic Hermite on ``(y0, f0, y1, f1)`` (order 3).

Gradients: ``'direct'`` differentiates each converged stage solve by the
implicit function theorem (never through the Newton iterations); ``'checkpoint'``
replays the steps with the same stepper; ``'adjoint'`` solves the augmented
system with the same method, its Jacobian taken by forward differences (the
augmented field is not differentiable by autograd). The adjoint solve runs the
state backwards, where a fast-decaying mode grows like ``exp(|lambda| T)``, so on
strongly stiff problems its gradient is the least accurate of the three.

The Newton iterations stop at a tolerance set by rtol/atol (``kappa`` times
the scaled norm), with rtol held at or above ``20 eps`` of the dtype so that a
float32 solve can converge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._driver.adaptive import RunResult, integrate_adaptive
from .._driver.fixed import _hermite, integrate_fixed
from .._driver.problem import ADAPTIVE_OPTIONS, FIXED_OPTIONS, Problem
from .._errors import SolverError
from .newton import ImplicitGrad, NewtonFailure, NewtonSolver, jacobian
from .rk import StepResult, _hermite_weights

__all__ = [
    "IMPLICIT_ADAPTIVE_OPTIONS",
    "IMPLICIT_FIXED_OPTIONS",
    "IMPLICIT_METHODS",
    "IMPLICIT_TABLEAUS",
    "ImplicitStepper",
    "ImplicitTableau",
]

IMPLICIT_FIXED_OPTIONS = FIXED_OPTIONS | {"max_iters"}
IMPLICIT_ADAPTIVE_OPTIONS = ADAPTIVE_OPTIONS | {"max_iters"}

DEFAULT_MAX_ITERS_FIXED = 100
DEFAULT_MAX_ITERS_ADAPTIVE = 10
KAPPA_FIXED = 0.1
KAPPA_ADAPTIVE = 0.03
# A failed Newton iteration reports this scaled error, so the controller shrinks
# the step by its largest factor (``dfactor``).
_FAILED_ERROR = 1e6
# The stage predictor extrapolates the previous step's interpolant only for a
# step at most this many times longer.
_MAX_EXTRAPOLATION = 3.0


@dataclass(frozen=True)
class ImplicitTableau:
    """Coefficients of an implicit Runge-Kutta method, with their source.

    Attributes:
        name: the method's name, as passed to ``method=``.
        c: nodes, length ``s``.
        a: the full ``s x s`` matrix as rows.
        b: weights, length ``s``.
        order: order of the method.
        source: where the coefficients come from.
        b_hat: weights of the embedded solution (adaptive methods), else
            ``None``.
        error_order: order of the embedded solution.
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    source: str
    b_hat: tuple[float, ...] | None = None
    error_order: int | None = None
    # Read by the adaptive loop; only DOP853 has a second estimate.
    b_error2: None = None

    @property
    def n_stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_hat is not None

    @property
    def diagonal(self) -> bool:
        """Diagonally implicit: ``a_ij = 0`` for ``j > i``."""
        s = self.n_stages
        return all(self.a[i][j] == 0 for i in range(s) for j in range(i + 1, s))

    @property
    def explicit_first(self) -> bool:
        return self.diagonal and self.a[0][0] == 0 and self.c[0] == 0

    @property
    def stiffly_accurate(self) -> bool:
        return tuple(self.a[-1]) == tuple(self.b)


def _tab(name, c, a, b, order, source, **kw) -> ImplicitTableau:
    return ImplicitTableau(
        name,
        tuple(float(x) for x in c),
        tuple(tuple(float(x) for x in row) for row in a),
        tuple(float(x) for x in b),
        order,
        source,
        **kw,
    )


_S2 = math.sqrt(2.0)
_S3 = math.sqrt(3.0)
_S6 = math.sqrt(6.0)
_S15 = math.sqrt(15.0)

IMPLICIT_EULER = _tab(
    "implicit_euler",
    [1],
    [[1]],
    [1],
    1,
    "Backward Euler; Hairer and Wanner, Solving ODEs II, IV.3.",
)
"""Backward Euler: order 1, L-stable."""

IMPLICIT_MIDPOINT = _tab(
    "implicit_midpoint",
    [0.5],
    [[0.5]],
    [1],
    2,
    "The one-stage Gauss method; Hairer and Wanner, Solving ODEs II, IV.5, Table 5.1.",
)
"""Implicit midpoint rule: order 2, A-stable, symplectic."""

TRAPEZOID = _tab(
    "trapezoid",
    [0, 1],
    [[0, 0], [0.5, 0.5]],
    [0.5, 0.5],
    2,
    "Trapezoidal rule (Crank-Nicolson) as a two-stage ESDIRK (Lobatto IIIA); "
    "Hairer and Wanner, Solving ODEs II, IV.5, Table 5.7.",
)
"""Trapezoidal rule: order 2, A-stable (not L-stable)."""

_G = 1.0 - _S2 / 2.0
SDIRK2 = _tab(
    "sdirk2",
    [_G, 1],
    [[_G, 0], [1 - _G, _G]],
    [1 - _G, _G],
    2,
    "Alexander (1977), 'Diagonally implicit Runge-Kutta methods for stiff "
    "O.D.E.'s', SIAM J. Numer. Anal. 14, two-stage method with gamma = "
    "1 - sqrt(2)/2; also Hairer and Wanner, Solving ODEs II, IV.6.",
)
"""Two-stage SDIRK: order 2, L-stable, stiffly accurate."""

_GT = 2.0 - _S2
_W = _S2 / 4.0
TRBDF2 = _tab(
    "trbdf2",
    [0, _GT, 1],
    [[0, 0, 0], [_GT / 2, _GT / 2, 0], [_W, _W, _GT / 2]],
    [_W, _W, _GT / 2],
    2,
    "TR-BDF2 of Bank et al. (1985) with gamma = 2 - sqrt(2), in the ESDIRK form "
    "of Hosea and Shampine (1996), 'Analysis and implementation of TR-BDF2', "
    "Appl. Numer. Math. 20, eq. (2)-(3).",
)
"""TR-BDF2: order 2, L-stable, stiffly accurate."""

RADAU_IIA3 = _tab(
    "radauIIA3",
    [1 / 3, 1],
    [[5 / 12, -1 / 12], [3 / 4, 1 / 4]],
    [3 / 4, 1 / 4],
    3,
    "Two-stage Radau IIA; Hairer and Wanner, Solving ODEs II, IV.5, Table 5.5.",
)
"""Radau IIA, two stages: order 3, L-stable, stiffly accurate."""

GL4 = _tab(
    "gl4",
    [0.5 - _S3 / 6, 0.5 + _S3 / 6],
    [[0.25, 0.25 - _S3 / 6], [0.25 + _S3 / 6, 0.25]],
    [0.5, 0.5],
    4,
    "Two-stage Gauss-Legendre; Hairer and Wanner, Solving ODEs II, IV.5, Table 5.1.",
)
"""Gauss-Legendre, two stages: order 4, A-stable, symplectic."""

RADAU_IIA5 = _tab(
    "radauIIA5",
    [(4 - _S6) / 10, (4 + _S6) / 10, 1],
    [
        [(88 - 7 * _S6) / 360, (296 - 169 * _S6) / 1800, (-2 + 3 * _S6) / 225],
        [(296 + 169 * _S6) / 1800, (88 + 7 * _S6) / 360, (-2 - 3 * _S6) / 225],
        [(16 - _S6) / 36, (16 + _S6) / 36, 1 / 9],
    ],
    [(16 - _S6) / 36, (16 + _S6) / 36, 1 / 9],
    5,
    "Three-stage Radau IIA; Hairer and Wanner, Solving ODEs II, IV.5, Table 5.6.",
)
"""Radau IIA, three stages: order 5, L-stable, stiffly accurate."""

GL6 = _tab(
    "gl6",
    [0.5 - _S15 / 10, 0.5, 0.5 + _S15 / 10],
    [
        [5 / 36, 2 / 9 - _S15 / 15, 5 / 36 - _S15 / 30],
        [5 / 36 + _S15 / 24, 2 / 9, 5 / 36 - _S15 / 24],
        [5 / 36 + _S15 / 30, 2 / 9 + _S15 / 15, 5 / 36],
    ],
    [5 / 18, 4 / 9, 5 / 18],
    6,
    "Three-stage Gauss-Legendre; Hairer and Wanner, Solving ODEs II, IV.5, Table 5.2.",
)
"""Gauss-Legendre, three stages: order 6, A-stable, symplectic."""

# Kvaerno (2004), "Singly diagonally implicit Runge-Kutta methods with an
# explicit first stage", BIT 44, 489-502: the 7-stage method of order 5 with an
# embedded method of order 4 (the sixth stage), gamma = 0.26. c_i are the row
# sums of A.
_KG = 0.26
_K_ROWS = [
    [],
    [0.26],
    [0.13, 0.84033320996790809],
    [0.22371961478320505, 0.47675532319799699, -0.06470895363112615],
    [
        0.16648564323248321,
        0.10450018841591720,
        0.03631482272098715,
        -0.13090704451073998,
    ],
    [
        0.13855640231268224,
        0.0,
        -0.04245337201752043,
        0.02446657898003141,
        0.61943039072480676,
    ],
    [
        0.13659751177640291,
        0.0,
        -0.05496908796538376,
        -0.04118626728321046,
        0.62993304899016403,
        0.06962479448202728,
    ],
]
_K_A = [
    [*row, 0.0 if i == 0 else _KG] + [0.0] * (6 - i) for i, row in enumerate(_K_ROWS)
]
KVAERNO5 = _tab(
    "kvaerno5",
    [sum(row) for row in _K_A],
    _K_A,
    _K_A[6],
    5,
    "Kvaerno (2004), 'Singly diagonally implicit Runge-Kutta methods with an "
    "explicit first stage', BIT 44, 489-502: ESDIRK 5(4), 7 stages, gamma = 0.26.",
    b_hat=tuple(_K_A[5]),
    error_order=4,
)
"""Kvaerno's ESDIRK 5(4): L-stable, stiffly accurate, adaptive. Some stage
times lie beyond the step's end (c_3 = 1.23)."""

FIXED_IMPLICIT_NAMES = (
    "implicit_euler",
    "implicit_midpoint",
    "trapezoid",
    "radauIIA3",
    "gl4",
    "radauIIA5",
    "gl6",
    "sdirk2",
    "trbdf2",
)

IMPLICIT_TABLEAUS: dict[str, ImplicitTableau] = {
    tab.name: tab
    for tab in (
        IMPLICIT_EULER,
        IMPLICIT_MIDPOINT,
        TRAPEZOID,
        RADAU_IIA3,
        GL4,
        RADAU_IIA5,
        GL6,
        SDIRK2,
        TRBDF2,
        KVAERNO5,
    )
}


def _max_iters(problem: Problem, default: int) -> int:
    iters = problem.options.get("max_iters", default)
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)):
        raise TypeError(
            f"options['max_iters'] must be a positive int, but got {iters!r}"
        )
    if iters < 1:
        raise ValueError(f"options['max_iters'] must be at least 1, but got {iters}")
    return int(iters)


def _newton_rtol(rtol, dtype: torch.dtype):
    floor = 20.0 * torch.finfo(dtype).eps
    if isinstance(rtol, torch.Tensor):
        return rtol.clamp(min=floor)
    return max(float(rtol), floor)


class ImplicitStepper:
    """Takes steps of one implicit tableau; same interface as ``RKStepper``.

    The stages ``k`` returned by :meth:`step` start with ``f0`` (the explicit
    first stage of an ESDIRK, or ``f0`` prepended), then the stage derivatives.

    Args:
        tableau: the method.
        problem: the problem (its norm and tolerances set the Newton test).
        adaptive: reject a step on Newton failure instead of raising.
    """

    def __init__(
        self, tableau: ImplicitTableau, problem: Problem, adaptive: bool
    ) -> None:
        y0 = problem.y0
        if y0.is_complex():
            raise ValueError(
                f"method {tableau.name!r} needs a real state, but y0 is {y0.dtype}; "
                "split it into real and imaginary parts, or use an explicit method"
            )
        self.tableau = tab = tableau
        self.adaptive = adaptive
        self.problem = problem
        dtype, device = y0.dtype, y0.device
        self._dtype, self._device = dtype, device
        default = DEFAULT_MAX_ITERS_ADAPTIVE if adaptive else DEFAULT_MAX_ITERS_FIXED
        self.max_iters = _max_iters(problem, default)
        self.newton = NewtonSolver(
            problem.norm,
            _newton_rtol(problem.rtol, dtype),
            problem.atol,
            self.max_iters,
            KAPPA_ADAPTIVE if adaptive else KAPPA_FIXED,
        )
        self.min_step = float(problem.options.get("min_step", 0.0))
        s = tab.n_stages
        a = np.asarray(tab.a, dtype=np.float64)
        b = np.asarray(tab.b, dtype=np.float64)
        self._a_np = a
        self._c = list(tab.c)
        self.diagonal = tab.diagonal
        self.fsal = tab.stiffly_accurate
        self._first = 1 if tab.explicit_first else 0
        # Rows of k: f0 then the implicit stages (ESDIRK: k_0 is f0 itself).
        pad = 0 if tab.explicit_first else 1
        n_rows = s + pad
        b_k = np.zeros(n_rows)
        b_k[pad:] = b
        e_k = None
        if tab.b_hat is not None:
            e_k = np.zeros(n_rows)
            e_k[pad:] = b - np.asarray(tab.b_hat, dtype=np.float64)
        self._pad = pad

        def vec(values) -> torch.Tensor:
            return torch.tensor(np.asarray(values, dtype=np.float64)).to(
                dtype=dtype, device=device
            )

        self._b_k = vec(b_k)
        self._e_k = None if e_k is None else vec(e_k)
        self._a = vec(a)
        self._a_rows = [vec(a[i, :i]) for i in range(s)]
        if not self.diagonal:
            a_inv = np.linalg.inv(a)
            self._a_inv = vec(a_inv)
            self._d = vec(b @ a_inv)
        self._interp = _hermite_weights(b_k, n_rows, n_rows + 1)
        self.dense_needs_f1 = True
        # (t0, t1, y0, y1, f0, f1) of the last accepted step, and of the last
        # attempted one (accepted if the next step starts from its end).
        self._prev: tuple | None = None
        # Whether the field's output carries a graph (to parameters) when its
        # input does not; None until the first evaluation under autograd. When
        # it does not, and the state carries none, no gradient path is built.
        self._field_grad: bool | None = None
        self._pending: tuple | None = None

    # -- the step --------------------------------------------------------------

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
        self.newton.start_step()
        try:
            if self.diagonal:
                return self._step_diagonal(field, t0, t1, y0, f0, perturb)
            return self._step_coupled(field, t0, t1, y0, f0, perturb)
        except NewtonFailure as err:
            h = t1 - t0
            if self.adaptive and abs(h) > self.min_step:
                scale = y0.detach().abs().mul(self.problem.rtol).add(self.problem.atol)
                k = y0.new_zeros((self._b_k.shape[0], y0.shape[0]))
                return StepResult(y0, None, _FAILED_ERROR * scale, k, None)
            remedy = (
                "Lower options['step_size']"
                if not self.adaptive
                else "Lower options['min_step']"
            )
            raise SolverError(
                f"Newton's method for the stages of {self.tableau.name!r} failed on "
                f"the step from t = {t0!r} to t = {t1!r} (dt = {h:.3g}): {err.reason} "
                f"(contraction rate {err.rate:.3g}, {err.iters} iterations, with a "
                f"fresh Jacobian). {remedy}, raise options['max_iters'] (now "
                f"{self.max_iters}), or loosen rtol/atol, which set the Newton "
                "tolerance.",
                t=t0,
                dt=h,
                reason="newton",
            ) from None

    def _stage_perturb(self, c: float, perturb: bool) -> int:
        return -1 if perturb and c == 1.0 else 0

    def _solve(self, field, t0: float, y0, perturb: int, attempt):
        """Runs ``attempt(False)`` (simplified Newton); if it fails with a kept
        Jacobian, retries with a fresh one at ``(t0, y0)``; if that fails too,
        and the step is fixed, retries with full Newton, ``attempt(True)``
        (a Jacobian at every iterate)."""
        nt = self.newton
        nt.ensure_jacobian(field, t0, y0, perturb)
        try:
            return attempt(False)
        except NewtonFailure:
            if nt.fresh and self.adaptive:
                raise
        if not nt.fresh:
            nt.update_jacobian(field, t0, y0, perturb)
            try:
                return attempt(False)
            except NewtonFailure:
                if self.adaptive:
                    raise
        return attempt(True)

    def _step_diagonal(self, field, t0, t1, y0, f0, perturb) -> StepResult:
        h = t1 - t0
        nt = self.newton
        grad = torch.is_grad_enabled()
        y0_d = y0.detach()
        prev = self._previous_step(t0, y0)
        ks: list[torch.Tensor] = [f0]
        z = y0
        for i in range(self._first, self.tableau.n_stages):
            c = self._c[i]
            t_i = t1 if c == 1.0 else t0 + c * h
            pert = self._stage_perturb(c, perturb)
            hg = h * float(self._a_np[i, i])
            if i > 0:
                k_mat = torch.stack(ks[self._pad : self._pad + i], 1)
                base = torch.addmv(y0, k_mat, self._a_rows[i], alpha=h)
            else:
                base = y0
            base_d = base.detach()
            guess = self._stage_guess(
                prev, t0, t1, t_i, lambda b=base_d, hg=hg: b + hg * ks[-1].detach()
            )

            def residual(z, base_d=base_d, t_i=t_i, pert=pert, hg=hg):
                return z - base_d - hg * field(t_i, z, pert)

            def matrix_at(z, t_i=t_i, pert=pert, hg=hg):
                jac = jacobian(field, t_i, z, pert)
                eye = torch.eye(jac.shape[0], dtype=jac.dtype, device=jac.device)
                return eye - hg * jac

            def attempt(full, guess=guess, hg=hg, residual=residual, m=matrix_at):
                if full:
                    return nt.iterate(residual, guess, None, m)
                return nt.iterate(residual, guess, nt.dirk_lu(hg))

            with torch.no_grad():
                z_d = self._solve(field, t0, y0_d, 0, attempt)
            z = z_d
            if grad and (self._field_grad is not False or base.requires_grad):
                fz = field(t_i, z_d, pert)
                self._field_grad = fz.requires_grad
                if fz.requires_grad or base.requires_grad:
                    z_map = base + hg * fz

                    z = ImplicitGrad.apply(z_map, lambda m=matrix_at, z_d=z_d: m(z_d))
            ks.append((z - base) / hg)
        k = torch.stack(ks)
        y1 = z if self.fsal else torch.addmv(y0, k.T, self._b_k, alpha=h)
        y_error = None
        if self._e_k is not None:
            y_error = torch.addmv(y0, k.T, self._e_k, beta=0, alpha=h)
        f1 = k[-1] if self.fsal else None
        if self.adaptive and f1 is not None:
            self._pending = (t0, t1, y0_d, y1.detach(), f0.detach(), f1.detach(), y1)
        return StepResult(y1, f1, y_error, k, None)

    def _previous_step(self, t0: float, y0: torch.Tensor) -> tuple | None:
        """The last accepted step when this one continues it, for the stage
        predictor (an extrapolation of its cubic Hermite interpolant)."""
        pend = self._pending
        if pend is not None and pend[1] == t0 and pend[6] is y0:
            self._prev = pend[:6]
        self._pending = None
        prev = self._prev
        if prev is None or prev[1] != t0:
            return None
        return prev

    def _stage_guess(self, prev, t0, t1, t_i, fallback):
        # Extrapolating far beyond the previous step is worse than no guess.
        if prev is None or abs(t1 - t0) > _MAX_EXTRAPOLATION * abs(prev[1] - prev[0]):
            return fallback()
        return _hermite(*prev[2:], prev[0], prev[1], t_i)

    def _step_coupled(self, field, t0, t1, y0, f0, perturb) -> StepResult:
        h = t1 - t0
        nt = self.newton
        s = self.tableau.n_stages
        times = [t1 if c == 1.0 else t0 + c * h for c in self._c]
        perts = [self._stage_perturb(c, perturb) for c in self._c]
        y0_d = y0.detach()
        a = self._a

        def stages(z_all, y_base):
            return torch.stack(
                [field(times[i], y_base + z_all[i], perts[i]) for i in range(s)]
            )

        def residual(z_all):
            return z_all - h * (a @ stages(z_all, y0_d))

        c_vec = torch.tensor(self._c, dtype=y0.dtype, device=y0.device)
        guess = h * c_vec[:, None] * f0.detach()[None]

        def matrix_at(z_all):
            """``I - h [a_ij J(Y_j)]``, the exact derivative of the residual."""
            jacs = torch.stack(
                [jacobian(field, times[i], y0_d + z_all[i], perts[i]) for i in range(s)]
            )
            n = jacs.shape[1]
            blocks = torch.einsum("ij,jab->iajb", a, jacs).reshape(s * n, -1)
            eye = torch.eye(s * n, dtype=blocks.dtype, device=blocks.device)
            return eye - h * blocks

        def attempt(full):
            if full:
                return nt.iterate(residual, guess, None, matrix_at)
            return nt.iterate(residual, guess, nt.firk_lu(h, a))

        with torch.no_grad():
            z_d = self._solve(field, t0, y0_d, 0, attempt)
        z = z_d
        if torch.is_grad_enabled() and (
            self._field_grad is not False or y0.requires_grad
        ):
            f_all = stages(z_d, y0)
            if y0.requires_grad is False:
                self._field_grad = f_all.requires_grad
            if f_all.requires_grad:
                z_map = h * (a @ f_all)
                z = ImplicitGrad.apply(z_map, lambda: matrix_at(z_d))
        y1 = y0 + self._d @ z
        k_stages = (self._a_inv @ z) / h
        k = torch.cat([f0[None], k_stages])
        f1 = k_stages[-1] if self.fsal else None
        return StepResult(y1, f1, None, k, None)

    # -- dense output -----------------------------------------------------------

    def dense_stages(self, field, t0, t1, y0, k, f1) -> torch.Tensor:
        """``k`` and ``f1``: the rows of the cubic Hermite interpolant."""
        return torch.cat([k, f1[None]])

    def dense_weights(self, theta: float) -> torch.Tensor:
        """Per-row weights of the dense output at ``theta`` in [0, 1]."""
        powers = theta ** np.arange(1, self._interp.shape[1] + 1)
        w = self._interp @ powers
        return torch.tensor(w).to(dtype=self._dtype, device=self._device)

    def dense(self, y0, stages, t0: float, t1: float, t: float) -> torch.Tensor:
        """The cubic Hermite interpolant at ``t`` inside ``[t0, t1]``."""
        dt = t1 - t0
        theta = (t - t0) / dt if dt != 0 else 1.0
        return torch.addmv(y0, stages.T, self.dense_weights(theta), alpha=dt)


def _count(res: RunResult, stepper: ImplicitStepper) -> RunResult:
    res.stats.n_jac = stepper.newton.n_jac
    res.stats.n_lu = stepper.newton.n_lu
    return res


def _fixed_runner(tab: ImplicitTableau):
    def run(problem: Problem, record_steps: bool = False, **kw: Any) -> RunResult:
        stepper = ImplicitStepper(tab, problem, adaptive=False)
        res = integrate_fixed(problem, None, record_steps=record_steps, stepper=stepper)
        return _count(res, stepper)

    return run


def _adaptive_runner(tab: ImplicitTableau):
    def run(problem: Problem, **kw: Any) -> RunResult:
        stepper = ImplicitStepper(tab, problem, adaptive=True)
        res = integrate_adaptive(problem, None, stepper=stepper, **kw)
        return _count(res, stepper)

    return run


# name -> (adaptive, run)
IMPLICIT_METHODS: dict[str, tuple[bool, Any]] = {
    name: (
        tab.adaptive,
        _adaptive_runner(tab) if tab.adaptive else _fixed_runner(tab),
    )
    for name, tab in IMPLICIT_TABLEAUS.items()
}
