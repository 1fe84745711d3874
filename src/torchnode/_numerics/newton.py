"""Newton iterations for the stage equations of implicit Runge-Kutta methods.

Two kinds of system are solved on the whole flat state ``[N]``:

* one stage of a diagonally implicit method,
  ``z = base + h * gamma * f(t_i, z)``, with the matrix ``I - h gamma J``;
* all ``s`` stages of a fully implicit method at once, in the increments
  ``Z_i = Y_i - y0``: ``Z = h (A kron I) F(y0 + Z)``, with the matrix
  ``I - h (A kron J)`` of size ``s N``.

Both use simplified Newton (Hairer and Wanner, Solving ODEs II, IV.8): the
Jacobian ``J = df/dy`` is taken by autograd at the start of a step and kept,
with its LU factorisation, across stages and across steps while the iteration
converges quickly. A slow iteration marks ``J`` stale (it is recomputed on the
next solve); a diverging one with a stale ``J`` is retried once with a fresh
one; the factorisation is redone whenever ``h gamma`` changes. The iteration
stops when the estimated distance to the solution, ``eta * ||dz||`` with the
contraction rate ``theta`` and ``eta = theta / (1 - theta)``, is at most
``kappa`` in the solver's scaled norm.

Gradients do not flow through the iterations. :class:`ImplicitGrad` marks a
converged solution: its backward pass solves the transposed linear system with
the exact Jacobian at the solution (the implicit function theorem), and the
rest of the chain rule is one evaluation of the fixed-point map at the solution.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .norms import Norm

__all__ = ["ImplicitGrad", "NewtonSolver", "jacobian"]

# Contraction rate above which the Jacobian is refreshed for the next solve.
_THETA_SLOW = 0.2


def jacobian(
    field: Callable[..., torch.Tensor], t: float, y: torch.Tensor, perturb: int = 0
) -> torch.Tensor:
    """``df/dy`` at ``(t, y)`` as ``[N, N]``, detached.

    By reverse-mode autograd (one batched vector-Jacobian product over the rows
    of the identity, or one per row where batching is not supported). A field
    whose output carries no graph back to ``y`` (one that detaches its input,
    as the augmented adjoint field does) gets forward differences instead.
    """
    n = y.shape[0]
    with torch.enable_grad():
        yv = y.detach().requires_grad_()
        out = field(t, yv, perturb)
        if out.requires_grad:
            eye = torch.eye(n, dtype=out.dtype, device=out.device)
            try:
                (jac,) = torch.autograd.grad(
                    out, yv, eye, retain_graph=True, is_grads_batched=True
                )
            except (RuntimeError, NotImplementedError):
                # An operation without a batching rule: one product per row.
                rows = [
                    torch.autograd.grad(out, yv, eye[i], retain_graph=True)[0]
                    for i in range(n)
                ]
                jac = torch.stack(rows)
            return jac.detach()
    return _forward_differences(field, t, y.detach(), out.detach(), perturb)


def _forward_differences(field, t: float, y, f0, perturb: int) -> torch.Tensor:
    eps = torch.finfo(y.dtype).eps
    n = y.shape[0]
    cols = []
    with torch.no_grad():
        for j in range(n):
            delta = math.sqrt(eps) * max(abs(float(y[j])), 1e-5)
            yp = y.clone()
            yp[j] += delta
            cols.append((field(t, yp, perturb) - f0) / delta)
    return torch.stack(cols, 1) if cols else y.new_zeros((0, 0))


class NewtonFailure(Exception):
    """The Newton iteration diverged or ran out of iterations."""

    def __init__(self, reason: str, iters: int, rate: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.iters = iters
        self.rate = rate


class NewtonSolver:
    """Simplified Newton with a kept Jacobian and LU factorisations.

    Args:
        norm: the solver's error norm on a scaled vector.
        rtol, atol: tolerances that scale the Newton increments.
        max_iters: iterations allowed per solve.
        kappa: the iteration stops when the estimated remaining error is at
            most ``kappa`` in the scaled norm.
    """

    def __init__(
        self,
        norm: Norm,
        rtol: float | torch.Tensor,
        atol: float | torch.Tensor,
        max_iters: int,
        kappa: float,
    ) -> None:
        self.norm = norm
        self.rtol = rtol
        self.atol = atol
        self.max_iters = max_iters
        self.kappa = kappa
        self.jac: torch.Tensor | None = None
        self.fresh = False  # J was taken at the current step's start
        self.stale = True  # J must be recomputed before the next solve
        self._lu: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.eta = 1.0
        self.n_jac = 0
        self.n_lu = 0
        self.n_iters = 0

    # -- Jacobian and factorisations ------------------------------------------

    def start_step(self) -> None:
        """A new step begins: the kept Jacobian no longer counts as fresh."""
        self.fresh = False

    def update_jacobian(self, field, t: float, y: torch.Tensor, perturb: int) -> None:
        self.jac = jacobian(field, t, y, perturb)
        self.n_jac += 1
        self.fresh = True
        self.stale = False
        self._lu.clear()

    def ensure_jacobian(self, field, t: float, y: torch.Tensor, perturb: int) -> None:
        if self.jac is None or self.stale or self.jac.shape[0] != y.shape[0]:
            self.update_jacobian(field, t, y, perturb)

    def _factor(self, key: tuple, build: Callable[[], torch.Tensor]):
        key = (key[0], float(f"{key[1]:.12g}"))
        lu = self._lu.get(key)
        if lu is None:
            if len(self._lu) > 4:
                self._lu.clear()
            lu = torch.linalg.lu_factor(build())
            self._lu[key] = lu
            self.n_lu += 1
        return lu

    def dirk_lu(self, hg: float):
        """LU of ``I - hg J``."""
        jac = self.jac
        assert jac is not None

        def build() -> torch.Tensor:
            eye = torch.eye(jac.shape[0], dtype=jac.dtype, device=jac.device)
            return eye - hg * jac

        return self._factor(("dirk", hg), build)

    def firk_lu(self, h: float, a: torch.Tensor):
        """LU of ``I - h (A kron J)``."""
        jac = self.jac
        assert jac is not None

        def build() -> torch.Tensor:
            m = torch.kron(a, jac)
            eye = torch.eye(m.shape[0], dtype=jac.dtype, device=jac.device)
            return eye - h * m

        return self._factor(("firk", h), build)

    # -- the iteration --------------------------------------------------------

    def _scaled(self, dz: torch.Tensor, z: torch.Tensor) -> float:
        scale = z.abs().mul(self.rtol).add(self.atol)
        if dz.shape != scale.shape:
            scale = scale.expand_as(dz)
        return float(self.norm((dz / scale).reshape(-1)))

    def iterate(
        self,
        residual: Callable[[torch.Tensor], torch.Tensor],
        z: torch.Tensor,
        lu,
        matrix_at: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Runs ``z <- z - M^-1 residual(z)`` to convergence and returns ``z``.

        With ``matrix_at`` the iteration is full Newton: ``M = matrix_at(z)``
        is rebuilt (and factorised) at every iterate, and ``lu`` is ignored.

        Raises:
            NewtonFailure: the increments grew, or ``max_iters`` ran out.
        """
        prev = math.nan
        eta = max(self.eta, torch.finfo(z.dtype).eps) ** 0.8
        theta = 0.0
        for it in range(1, self.max_iters + 1):
            self.n_iters += 1
            r = residual(z)
            if matrix_at is not None:
                lu = torch.linalg.lu_factor(matrix_at(z))
                self.n_jac += 1
                self.n_lu += 1
            dz = torch.linalg.lu_solve(*lu, -r.reshape(-1, 1)).reshape(z.shape)
            size = self._scaled(dz, z)
            z = z + dz
            if not math.isfinite(size):
                raise NewtonFailure("a non-finite Newton increment", it, math.inf)
            if it > 1:
                theta = size / prev if prev > 0 else 0.0
                if theta >= 1.0:
                    self.stale = True
                    if matrix_at is None:
                        raise NewtonFailure("diverging Newton increments", it, theta)
                    # Full Newton may grow its first increments far from the
                    # solution; it has max_iters to settle.
                    eta = 1.0
                else:
                    eta = theta / (1.0 - theta)
                if theta > _THETA_SLOW:
                    self.stale = True
            if size == 0.0 or eta * size <= self.kappa:
                self.eta = eta
                return z
            prev = size
        self.stale = True
        raise NewtonFailure(
            f"no convergence in max_iters = {self.max_iters} iterations",
            self.max_iters,
            theta,
        )


class ImplicitGrad(torch.autograd.Function):
    """Identity in the forward pass on a converged solution ``z``; the backward
    pass maps ``v`` to ``w = (dG/dz)^{-T} v`` for the residual ``G``.

    Callers pass ``z_map = z - G(z, inputs)`` evaluated at the detached
    solution with a graph to the inputs: then ``w`` flowing through that graph
    gives ``-(dG/dinputs)^T w``, the implicit function theorem's gradient.
    ``matrix()`` returns ``dG/dz`` (with the exact Jacobian at the solution).
    """

    @staticmethod
    def forward(ctx, z_map: torch.Tensor, matrix: Callable[[], torch.Tensor]):
        ctx.matrix = matrix
        return z_map.clone()

    @staticmethod
    def backward(ctx, grad):
        m = ctx.matrix()
        w = torch.linalg.solve(m.T, grad.reshape(-1, 1).to(m.dtype))
        return w.reshape(grad.shape).to(grad.dtype), None
