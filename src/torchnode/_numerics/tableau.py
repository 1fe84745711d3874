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

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

Number = float | Fraction

__all__ = [
    "ButcherTableau",
    "RootedTree",
    "continuous_extension",
    "dense_output_residuals",
    "elementary_weight",
    "hermite_interp",
    "hermite_interp_from_midpoint",
    "order_condition_residuals",
    "rooted_trees",
    "stage_consistency_residual",
    "tree_density",
    "tree_label",
    "tree_order",
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
        c: Sequence[Number],
        a: Sequence[Sequence[Number]],
        b: Sequence[Number],
        order: int,
        source: str,
        *,
        b_hat: Sequence[Number] | None = None,
        error_order: int | None = None,
        fsal: bool = False,
        interp: Sequence[Sequence[Number]] | np.ndarray | None = None,
        interp_order: int = 3,
        extra_c: Sequence[Number] = (),
        extra_a: Sequence[Sequence[Number]] = (),
        b_error2: Sequence[Number] | None = None,
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
    b: Sequence[Number], c_mid: Sequence[Number], f1_stage: int
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


RootedTree = tuple
"""A rooted tree as the sorted tuple of its root's subtrees; the one-node tree is
``()``. Sorting makes the representation canonical, so equal trees compare equal."""


def _graft(tree: RootedTree) -> set[RootedTree]:
    """Every tree obtained from ``tree`` by attaching one new leaf to one node."""
    out = {tuple(sorted((*tree, ())))}
    for i, child in enumerate(tree):
        for grown in _graft(child):
            out.add(tuple(sorted((*tree[:i], grown, *tree[i + 1 :]))))
    return out


@functools.cache
def rooted_trees(order: int) -> tuple[RootedTree, ...]:
    """All rooted trees with exactly ``order`` nodes, in a fixed order.

    Built by attaching a leaf to every node of every tree one size smaller
    (trees as in J. C. Butcher, Numerical Methods for Ordinary Differential
    Equations, 3rd ed., Wiley 2016, Chapter 3). The counts 1, 1, 2, 4, 9, 20,
    48, 115, ... are OEIS A000081.
    """
    if order < 1:
        raise ValueError(f"tree order must be >= 1, got {order}")
    if order == 1:
        return ((),)
    found: set[RootedTree] = set()
    for tree in rooted_trees(order - 1):
        found |= _graft(tree)
    return tuple(sorted(found))


def tree_order(tree: RootedTree) -> int:
    """Number of nodes ``|t|``."""
    return 1 + sum(tree_order(child) for child in tree)


def tree_density(tree: RootedTree) -> int:
    """The density ``gamma(t) = |t| * prod gamma(subtree)``."""
    out = tree_order(tree)
    for child in tree:
        out *= tree_density(child)
    return out


def tree_label(tree: RootedTree) -> str:
    """Butcher's bracket notation: ``τ`` is the leaf, ``[t1,t2]`` joins subtrees."""
    if not tree:
        return "τ"
    return "[" + ",".join(tree_label(child) for child in tree) + "]"


def elementary_weight(
    tree: RootedTree,
    a: np.ndarray,
    c: np.ndarray,
    _memo: dict[RootedTree, np.ndarray] | None = None,
) -> np.ndarray:
    """The stage vector ``Phi(t)`` with ``sum_i b_i Phi_i(t)`` the elementary weight.

    ``Phi(τ) = e`` and ``Phi([t1, ..., tm]) = prod_k (A Phi(t_k))`` elementwise,
    with ``A e`` written as ``c`` (valid under the row-sum condition, which
    :func:`stage_consistency_residual` checks). Hairer, Norsett and Wanner,
    Solving ODEs I, 2nd ed., Section II.2.
    """
    memo = {} if _memo is None else _memo
    if tree in memo:
        return memo[tree]
    out = np.ones(len(c))
    for child in tree:
        out = out * (c if not child else a @ elementary_weight(child, a, c, memo))
    memo[tree] = out
    return out


def order_condition_residuals(
    tab: ButcherTableau,
    order: int,
    weights: Sequence[Number] | np.ndarray | None = None,
) -> dict[str, float]:
    """Residuals of the Runge-Kutta order conditions for all trees up to ``order``.

    A method has order ``p`` iff ``b . Phi(t) = 1 / gamma(t)`` for every rooted
    tree with ``|t| <= p`` (J. C. Butcher (1963), "Coefficients for the study of
    Runge-Kutta integration processes", J. Austral. Math. Soc. 3, 185-201;
    Hairer, Norsett and Wanner, Solving ODEs I, Section II.2). ``weights``
    replaces ``b``, e.g. by an embedded solution's weights. Returns a dict
    mapping ``"<order>: <tree>"`` to ``b . Phi - 1/gamma``; there are 200
    conditions up to order 8.
    """
    a = tab.matrix()
    c = np.asarray(tab.c, dtype=float)
    b = np.asarray(tab.b if weights is None else weights, dtype=float)
    memo: dict[RootedTree, np.ndarray] = {}
    out: dict[str, float] = {}
    for n in range(1, order + 1):
        for tree in rooted_trees(n):
            phi = elementary_weight(tree, a, c, memo)
            out[f"{n}: {tree_label(tree)}"] = float(b @ phi - 1.0 / tree_density(tree))
    return out


def hermite_interp(b: Sequence[Number], f1_stage: int) -> np.ndarray:
    """Cubic Hermite dense output on ``(y0, f0, y1, f1)`` as an interp matrix.

    With ``y1 = y0 + dt sum b_i k_i``, ``f0 = k_0`` and ``f1 = k_{f1_stage}``
    the Hermite basis gives per-stage polynomials
    ``b_i (3 theta^2 - 2 theta^3) + [i = 0] (theta - 2 theta^2 + theta^3)
    + [i = f1_stage] (theta^3 - theta^2)``.

    Returns:
        ``P`` of shape ``[len(b), 3]`` (coefficients of theta, theta^2, theta^3).
    """
    out = np.outer(np.asarray([float(x) for x in b]), [0.0, 3.0, -2.0])
    out[0] += [1.0, -2.0, 1.0]
    out[f1_stage] += [0.0, -1.0, 1.0]
    return out


def continuous_extension(
    tab: ButcherTableau,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dense output as one explicit scheme: ``(c, A, P)`` over all its stages.

    The stages are the ``s`` main stages, then ``extra_c``; ``P`` is the interp
    matrix. When ``tab.interp`` is ``None`` the dense output is cubic Hermite;
    ``f1`` is the last stage for an FSAL tableau and otherwise one more stage
    ``f(t0 + dt, y1)`` (node 1, row ``b``) is appended.
    """
    s = tab.n_stages
    rows = [list(r) for r in tab.a] + [list(r) for r in tab.extra_a]
    nodes = list(tab.c) + list(tab.extra_c)
    if tab.interp is not None:
        interp = np.asarray(tab.interp, dtype=float)
    else:
        if not tab.fsal:
            rows.append(list(tab.b) + [0.0] * len(tab.extra_c))
            nodes.append(1.0)
        f1_stage = s - 1 if tab.fsal else len(nodes) - 1
        b_all = list(tab.b) + [0.0] * (len(nodes) - s)
        interp = hermite_interp(b_all, f1_stage=f1_stage)
    n = len(nodes)
    a = np.zeros((n, n))
    for i, row in enumerate(rows):
        a[i, : len(row)] = row
    return np.asarray(nodes, dtype=float), a, interp


def dense_output_residuals(tab: ButcherTableau, order: int) -> dict[str, float]:
    """Residuals of the dense-output order conditions for all trees up to ``order``.

    The continuous solution ``y0 + dt sum_i b_i(theta) k_i`` has order ``q`` iff
    ``b(theta) . Phi(t) = theta^|t| / gamma(t)`` for all ``theta`` and every tree
    with ``|t| <= q`` (Hairer, Norsett and Wanner, Solving ODEs I, Section II.6).
    Both sides are polynomials in ``theta``; the residual of a tree
    is the largest coefficient mismatch.
    """
    c, a, interp = continuous_extension(tab)
    memo: dict[RootedTree, np.ndarray] = {}
    out: dict[str, float] = {}
    for n in range(1, order + 1):
        for tree in rooted_trees(n):
            coef = interp.T @ elementary_weight(tree, a, c, memo)
            target = np.zeros(max(len(coef), n))
            target[n - 1] = 1.0 / tree_density(tree)
            coef = np.pad(coef, (0, len(target) - len(coef)))
            out[f"{n}: {tree_label(tree)}"] = float(np.max(np.abs(coef - target)))
    return out


def stage_consistency_residual(tab: ButcherTableau) -> float:
    """Largest ``|sum_j a_ij - c_i|`` over the stages (row-sum condition)."""
    return max(abs(sum(row) - ci) for row, ci in zip(tab.a, tab.c))
