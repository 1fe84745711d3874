"""Butcher tableaus as data.

A tableau describes an explicit Runge-Kutta method with ``s`` stages::

    k_i = f(t0 + c_i dt, y0 + dt * sum_{j < i} a_ij k_j)      i = 0 .. s-1
    y1  = y0 + dt * sum_i b_i k_i
    y_error = dt * sum_i b_error_i k_i                       (embedded estimate)

Dense output between ``t0`` and ``t0 + dt`` at ``theta = (t - t0) / dt`` is a
polynomial in ``theta`` with no constant term::

    y(theta) = y0 + dt * sum_i k_i * sum_j interp[i][j] * theta ** (j + 1)

where ``k_i`` runs over the ``s`` stages and then over ``extra_c`` stages that
are evaluated only when an output falls inside the step (DOP853's 7th-order
extension needs three of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

Number = float | Fraction

__all__ = [
    "ButcherTableau",
    "hermite_interp_from_midpoint",
    "order_condition_residuals",
]


def _f(x: Number) -> float:
    return float(x)


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit Runge-Kutta method, with their source.

    Attributes:
        name: the method's name, as passed to ``method=``.
        c: nodes, length ``s``.
        a: the strictly lower triangular matrix as rows; row ``i`` has ``i``
            entries (row 0 is empty).
        b: weights of the propagated solution, length ``s``.
        order: order of the propagated solution.
        source: where the coefficients come from (paper, page or table).
        b_error: ``b - b_hat``, the weights of the embedded error estimate;
            ``None`` for fixed-step methods.
        error_order: order of the embedded solution ``b_hat``.
        fsal: the last stage is ``f(t1, y1)`` ("first same as last"), so the
            next step gets its first stage for free.
        interp: dense-output polynomial coefficients, shape
            ``[s + len(extra_c), degree]``; ``None`` means cubic Hermite on
            ``(y0, f0, y1, f1)``.
        interp_order: order of the dense output.
        extra_c, extra_a: nodes and rows of stages used only by dense output.
        b_error2: a second error-weight vector for DOP853's combined estimate
            ``err5**2 / sqrt(err5**2 + 0.01 * err3**2)``; ``None`` otherwise.
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    source: str
    b_error: tuple[float, ...] | None = None
    error_order: int | None = None
    fsal: bool = False
    interp: tuple[tuple[float, ...], ...] | None = None
    interp_order: int = 3
    extra_c: tuple[float, ...] = ()
    extra_a: tuple[tuple[float, ...], ...] = ()
    b_error2: tuple[float, ...] | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        s = len(self.c)
        if len(self.a) != s or any(len(row) != i for i, row in enumerate(self.a)):
            raise ValueError(
                f"tableau {self.name!r}: a must have rows of length 0..s-1"
            )
        if len(self.b) != s:
            raise ValueError(f"tableau {self.name!r}: b must have length {s}")
        if self.b_error is not None and len(self.b_error) != s:
            raise ValueError(f"tableau {self.name!r}: b_error must have length {s}")
        n_all = s + len(self.extra_c)
        if self.interp is not None and len(self.interp) != n_all:
            raise ValueError(
                f"tableau {self.name!r}: interp must have {n_all} rows, "
                f"got {len(self.interp)}"
            )
        if len(self.extra_a) != len(self.extra_c):
            raise ValueError(f"tableau {self.name!r}: extra_a and extra_c differ")

    @property
    def n_stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_error is not None

    @staticmethod
    def build(
        name: str,
        c: list[Number],
        a: list[list[Number]],
        b: list[Number],
        order: int,
        source: str,
        *,
        b_hat: list[Number] | None = None,
        error_order: int | None = None,
        fsal: bool = False,
        interp: list[list[Number]] | np.ndarray | None = None,
        interp_order: int = 3,
        extra_c: list[Number] = (),  # type: ignore[assignment]
        extra_a: list[list[Number]] = (),  # type: ignore[assignment]
        b_error2: list[Number] | None = None,
    ) -> ButcherTableau:
        """Builds a tableau from exact or float coefficients.

        ``b_hat`` is the embedded solution's weights; the stored error weights
        are ``b - b_hat``, computed in exact arithmetic when both are Fractions.
        """
        b_error = None
        if b_hat is not None:
            b_error = tuple(_f(bi - bh) for bi, bh in zip(b, b_hat))
        return ButcherTableau(
            name=name,
            c=tuple(_f(x) for x in c),
            a=tuple(tuple(_f(x) for x in row) for row in a),
            b=tuple(_f(x) for x in b),
            order=order,
            source=source,
            b_error=b_error,
            error_order=error_order,
            fsal=fsal,
            interp=None
            if interp is None
            else tuple(tuple(float(x) for x in row) for row in np.asarray(interp)),
            interp_order=interp_order,
            extra_c=tuple(_f(x) for x in extra_c),
            extra_a=tuple(tuple(_f(x) for x in row) for row in extra_a),
            b_error2=None if b_error2 is None else tuple(_f(x) for x in b_error2),
        )

    def matrix(self) -> np.ndarray:
        """The full ``[s, s]`` matrix A (float64), zeros above the diagonal."""
        s = self.n_stages
        out = np.zeros((s, s))
        for i, row in enumerate(self.a):
            out[i, : len(row)] = row
        return out


def hermite_interp_from_midpoint(
    b: list[Number], c_mid: list[Number], f1_stage: int
) -> np.ndarray:
    """Quartic dense output fixed by ``y0, f0, y1, f1`` and a midpoint value.

    Shampine's continuous extension of Dormand-Prince 5(4) (Shampine 1986,
    "Some practical Runge-Kutta formulas", Math. Comp. 46) is the quartic
    through these five conditions, with ``y(1/2) = y0 + dt * sum c_mid_i k_i``.
    Each condition is linear in the stages, so the per-stage polynomial
    ``q_i(theta) = sum_j P[i, j] theta**(j+1)`` solves a 4x4 system.

    Returns:
        ``P`` of shape ``[s, 4]``.
    """
    s = len(b)
    # Rows: q(1) = b_i; q'(0) = [i == 0]; q'(1) = [i == f1_stage]; q(1/2) = c_mid_i.
    m = np.array(
        [
            [1.0, 1.0, 1.0, 1.0],
            [1.0, 0.0, 0.0, 0.0],
            [1.0, 2.0, 3.0, 4.0],
            [0.5, 0.25, 0.125, 0.0625],
        ]
    )
    rhs = np.zeros((4, s))
    rhs[0] = [float(x) for x in b]
    rhs[1, 0] = 1.0
    rhs[2, f1_stage] = 1.0
    rhs[3] = [float(x) for x in c_mid]
    return np.linalg.solve(m, rhs).T


def order_condition_residuals(tab: ButcherTableau, order: int, weights=None) -> dict:
    """Residuals of the Runge-Kutta order conditions up to ``order`` (<= 5).

    Uses the rooted-tree conditions ``b . Phi(tree) = 1 / gamma(tree)``; the
    returned dict maps a tree's label to ``b . Phi - 1/gamma``.
    """
    a = tab.matrix()
    c = np.asarray(tab.c)
    b = np.asarray(tab.b if weights is None else weights, dtype=float)
    e = np.ones_like(c)
    conds = {
        "1: b.e": (b @ e, 1.0),
        "2: b.c": (b @ c, 1 / 2),
        "3: b.c^2": (b @ c**2, 1 / 3),
        "3: b.Ac": (b @ a @ c, 1 / 6),
        "4: b.c^3": (b @ c**3, 1 / 4),
        "4: b.(c*Ac)": (b @ (c * (a @ c)), 1 / 8),
        "4: b.Ac^2": (b @ a @ c**2, 1 / 12),
        "4: b.AAc": (b @ a @ a @ c, 1 / 24),
        "5: b.c^4": (b @ c**4, 1 / 5),
        "5: b.(c^2*Ac)": (b @ (c**2 * (a @ c)), 1 / 10),
        "5: b.(Ac)^2": (b @ (a @ c) ** 2, 1 / 20),
        "5: b.(c*Ac^2)": (b @ (c * (a @ c**2)), 1 / 15),
        "5: b.Ac^3": (b @ a @ c**3, 1 / 20),
        "5: b.(c*AAc)": (b @ (c * (a @ a @ c)), 1 / 30),
        "5: b.A(c*Ac)": (b @ a @ (c * (a @ c)), 1 / 40),
        "5: b.AAc^2": (b @ a @ a @ c**2, 1 / 60),
        "5: b.AAAc": (b @ a @ a @ a @ c, 1 / 120),
    }
    out = {}
    for label, (value, target) in conds.items():
        if int(label.split(":")[0]) <= order:
            out[label] = float(value - target)
    return out


def stage_consistency_residual(tab: ButcherTableau) -> float:
    """Largest ``|sum_j a_ij - c_i|`` over the stages (row-sum condition)."""
    return max(abs(sum(row) - ci) for row, ci in zip(tab.a, tab.c))
