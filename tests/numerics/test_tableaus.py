"""Checks every registered Butcher tableau against the theory it claims.

Order conditions come from the rooted-tree expansion (Hairer, Norsett and
Wanner, Solving ODEs I, Sections II.2 and II.6); the dense-output order is also
measured numerically on a problem with a known solution.
"""

import dataclasses
import math
from decimal import Decimal, localcontext

import numpy as np
import pytest

from torchnode._numerics.tableau import (
    ButcherTableau,
    continuous_extension,
    dense_output_residuals,
    order_condition_residuals,
    rooted_trees,
    stage_consistency_residual,
    tree_density,
    tree_label,
    tree_order,
)
from torchnode._numerics.tableaus import ADAPTIVE_NAMES, FIXED_GRID_NAMES, TABLEAUS
from torchnode._numerics.tableaus import dopri8 as dopri8_module

NAMES = sorted(TABLEAUS)
ADAPTIVE = sorted(ADAPTIVE_NAMES)


# Residuals are float64 round-off; DOP853's dense output sums terms up to ~500 in
# size (about 3e-13 observed), so it alone gets the looser bound.
TOL = 1e-12
DENSE_TOL = {"dopri8": 1e-10}


def _max_abs(residuals: dict[str, float]) -> float:
    return max(abs(v) for v in residuals.values())


def _residuals_of_order(residuals: dict[str, float], order: int) -> list[float]:
    return [abs(v) for k, v in residuals.items() if int(k.split(":")[0]) == order]


# --- rooted trees -------------------------------------------------------------


def test_tree_counts_match_oeis_a000081() -> None:
    counts = [len(rooted_trees(n)) for n in range(1, 11)]
    assert counts == [1, 1, 2, 4, 9, 20, 48, 115, 286, 719]


def _t(*children: tuple) -> tuple:
    return tuple(sorted(children))


LEAF = ()


def test_tree_densities_of_small_trees() -> None:
    expected = {
        LEAF: 1,
        _t(LEAF): 2,
        _t(LEAF, LEAF): 3,
        _t(_t(LEAF)): 6,
        _t(LEAF, LEAF, LEAF): 4,
        _t(LEAF, _t(LEAF)): 8,
        _t(_t(LEAF, LEAF)): 12,
        _t(_t(_t(LEAF))): 24,
    }
    for tree, gamma in expected.items():
        assert tree_density(tree) == gamma, tree_label(tree)


def test_sum_of_labelling_counts_is_factorial() -> None:
    # alpha(t) = n! / (sigma(t) gamma(t)) counts the monotone labellings of t,
    # and the trees of order n together have (n-1)! of them (the orderings of
    # n-1 labels after the root), i.e. sum_{|t|=n} 1 / (sigma gamma) = 1 / n.
    def sigma(tree: tuple) -> int:
        out = 1
        for child in set(tree):
            m = tree.count(child)
            out *= math.factorial(m) * sigma(child) ** m
        return out

    for n in range(1, 9):
        total = sum(1 / (sigma(t) * tree_density(t)) for t in rooted_trees(n))
        assert total == pytest.approx(1 / n, rel=1e-12)


def _hand_coded_conditions(tab: ButcherTableau) -> dict[str, float]:
    """The classical conditions up to order 5, written out by hand."""
    a = tab.matrix()
    c = np.asarray(tab.c)
    b = np.asarray(tab.b)
    e = np.ones_like(c)
    conds = {
        LEAF: (b @ e, 1.0),
        _t(LEAF): (b @ c, 1 / 2),
        _t(LEAF, LEAF): (b @ c**2, 1 / 3),
        _t(_t(LEAF)): (b @ a @ c, 1 / 6),
        _t(LEAF, LEAF, LEAF): (b @ c**3, 1 / 4),
        _t(LEAF, _t(LEAF)): (b @ (c * (a @ c)), 1 / 8),
        _t(_t(LEAF, LEAF)): (b @ a @ c**2, 1 / 12),
        _t(_t(_t(LEAF))): (b @ a @ a @ c, 1 / 24),
        _t(LEAF, LEAF, LEAF, LEAF): (b @ c**4, 1 / 5),
        _t(LEAF, LEAF, _t(LEAF)): (b @ (c**2 * (a @ c)), 1 / 10),
        _t(_t(LEAF), _t(LEAF)): (b @ (a @ c) ** 2, 1 / 20),
        _t(LEAF, _t(LEAF, LEAF)): (b @ (c * (a @ c**2)), 1 / 15),
        _t(_t(LEAF, LEAF, LEAF)): (b @ a @ c**3, 1 / 20),
        _t(LEAF, _t(_t(LEAF))): (b @ (c * (a @ a @ c)), 1 / 30),
        _t(_t(LEAF, _t(LEAF))): (b @ a @ (c * (a @ c)), 1 / 40),
        _t(_t(_t(LEAF, LEAF))): (b @ a @ a @ c**2, 1 / 60),
        _t(_t(_t(_t(LEAF)))): (b @ a @ a @ a @ c, 1 / 120),
    }
    out = {}
    for tree, (value, target) in conds.items():
        out[f"{tree_order(tree)}: {tree_label(tree)}"] = float(value - target)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_tree_conditions_agree_with_hand_coded_ones(name: str) -> None:
    tab = TABLEAUS[name]
    general = order_condition_residuals(tab, 5)
    hand = _hand_coded_conditions(tab)
    assert set(general) == set(hand)
    for label, value in hand.items():
        assert general[label] == pytest.approx(value, abs=1e-13), label


def test_condition_count_up_to_order_8() -> None:
    assert len(order_condition_residuals(TABLEAUS["dopri8"], 8)) == 200


# --- registry -----------------------------------------------------------------


def test_registry_partitions_names() -> None:
    assert set(FIXED_GRID_NAMES).isdisjoint(ADAPTIVE_NAMES)
    assert set(TABLEAUS) == set(FIXED_GRID_NAMES) | set(ADAPTIVE_NAMES)
    for name, tab in TABLEAUS.items():
        assert tab.name == name
        assert tab.adaptive == (name in ADAPTIVE_NAMES)
        assert (tab.error_order is not None) == tab.adaptive


# --- per-tableau algebra ------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_row_sums_equal_nodes(name: str) -> None:
    tab = TABLEAUS[name]
    assert stage_consistency_residual(tab) < 1e-12
    c, a, _ = continuous_extension(tab)
    np.testing.assert_allclose(a.sum(axis=1), c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_order_conditions_hold_exactly_to_declared_order(name: str) -> None:
    tab = TABLEAUS[name]
    res = order_condition_residuals(tab, tab.order + 1)
    held = {k: v for k, v in res.items() if int(k.split(":")[0]) <= tab.order}
    assert _max_abs(held) < TOL, held
    assert max(_residuals_of_order(res, tab.order + 1)) > 1e-8


@pytest.mark.parametrize("name", ADAPTIVE)
def test_embedded_solution_has_declared_error_order(name: str) -> None:
    tab = TABLEAUS[name]
    assert tab.b_error is not None and tab.error_order is not None
    b_hat = np.asarray(tab.b) - np.asarray(tab.b_error)
    res = order_condition_residuals(tab, tab.error_order + 1, weights=b_hat)
    held = {k: v for k, v in res.items() if int(k.split(":")[0]) <= tab.error_order}
    assert _max_abs(held) < TOL, held
    assert max(_residuals_of_order(res, tab.error_order + 1)) > 1e-8


def test_dopri8_third_order_estimator() -> None:
    tab = TABLEAUS["dopri8"]
    assert tab.b_error2 is not None
    bhh = np.asarray(tab.b) - np.asarray(tab.b_error2)
    res = order_condition_residuals(tab, 4, weights=bhh)
    held = {k: v for k, v in res.items() if int(k.split(":")[0]) <= 3}
    assert _max_abs(held) < 1e-12
    assert max(_residuals_of_order(res, 4)) > 1e-8
    # The 5th-order estimate: the error weights sum to zero and are not b - bhh.
    assert tab.b_error is not None
    assert abs(sum(tab.b_error)) < 1e-12
    assert not np.allclose(tab.b_error, tab.b_error2)
    assert tab.n_stages == 13 and len(tab.extra_c) == 3
    assert tab.order == 8 and tab.error_order == 5 and tab.interp_order == 7


@pytest.mark.parametrize("name", NAMES)
def test_fsal_flag_matches_structure(name: str) -> None:
    tab = TABLEAUS[name]
    structural = (
        tab.n_stages > 1
        and tab.c[-1] == 1.0
        and tab.b[-1] == 0.0
        and tuple(tab.a[-1]) == tuple(tab.b[:-1])
    )
    assert tab.fsal == structural


def test_expected_fsal_methods() -> None:
    fsal = {name for name, tab in TABLEAUS.items() if tab.fsal}
    assert fsal == {"bosh3", "dopri5", "tsit5", "dopri8"}


def test_perturbed_coefficient_is_caught() -> None:
    tab = TABLEAUS["dopri8"]
    a = [list(row) for row in tab.a]
    a[7][4] += 1e-6
    a[7][0] -= 1e-6  # keep the row sum, break a higher condition
    bad = dataclasses.replace(tab, a=tuple(tuple(r) for r in a))
    assert stage_consistency_residual(bad) < 1e-12
    assert _max_abs(order_condition_residuals(bad, 8)) > 1e-8


# --- dense output -------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_dense_output_endpoints(name: str) -> None:
    tab = TABLEAUS[name]
    _, _, interp = continuous_extension(tab)
    s = tab.n_stages
    at_one = interp.sum(axis=1)
    np.testing.assert_allclose(at_one[:s], tab.b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(at_one[s:], 0.0, rtol=0, atol=1e-12)
    slope_at_zero = interp[:, 0]
    np.testing.assert_allclose(slope_at_zero, np.eye(len(interp))[0], atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_dense_output_conditions_hold_to_interp_order(name: str) -> None:
    tab = TABLEAUS[name]
    res = dense_output_residuals(tab, tab.interp_order + 1)
    held = {k: v for k, v in res.items() if int(k.split(":")[0]) <= tab.interp_order}
    assert _max_abs(held) < DENSE_TOL.get(name, TOL), held
    assert max(_residuals_of_order(res, tab.interp_order + 1)) > 1e-8


def test_dopri8_monomial_interp_matches_nested_form() -> None:
    """The [16, 7] matrix against dop853's nested r1..r8 evaluation."""
    tab = TABLEAUS["dopri8"]
    interp = np.asarray(tab.interp)
    assert interp.shape == (16, 7)
    rng = np.random.default_rng(0)
    k = rng.standard_normal(16)  # scalar stage values; dt = 1, y0 = 0
    b = np.zeros(16)
    b[:13] = tab.b
    r2 = b @ k
    r3 = k[0] - r2
    r4 = r2 - k[12] - r3
    d = [
        np.array([float(x) for x in dopri8_module._row(16, row)])
        for row in dopri8_module._D_SPARSE
    ]
    r5, r6, r7, r8 = (di @ k for di in d)
    for s in (0.0, 0.13, 0.5, 0.77, 1.0):
        s1 = 1.0 - s
        nested = s * (
            r2 + s1 * (r3 + s * (r4 + s1 * (r5 + s * (r6 + s1 * (r7 + s * r8)))))
        )
        monomial = sum(interp[i] @ s ** np.arange(1, 8) * k[i] for i in range(16))
        assert monomial == pytest.approx(nested, abs=1e-12)


# Numerical order check. Three uncoupled equations with known solutions,
#   y0' = -y0^2 (1/(1+t)),  y1' = -2 t y1^2 (1/(1+t^2)),  y2' = y2 (e^t),
# one step from t0 = 0.5 with exact initial values. Stage arithmetic runs in
# 40-digit decimals on the float64 coefficients, so roundoff in the arithmetic
# does not hide an 8th-order error; the float64 rounding of the coefficients
# themselves leaves an O(1e-16 dt) floor, which is why dopri8 is measured at
# larger steps.


def _rhs(t: Decimal, y: list[Decimal]) -> list[Decimal]:
    return [-y[0] * y[0], -2 * t * y[1] * y[1], y[2]]


def _exact(t: Decimal) -> list[Decimal]:
    return [1 / (1 + t), 1 / (1 + t * t), t.exp()]


def _axpy(
    y: list[Decimal], terms: list[tuple[Decimal, list[Decimal]]]
) -> list[Decimal]:
    out = list(y)
    for w, k in terms:
        out = [o + w * ki for o, ki in zip(out, k)]
    return out


def _one_step(
    tab: ButcherTableau, t0: Decimal, dt: Decimal, thetas: list[Decimal]
) -> tuple[list[Decimal], list[list[Decimal]]]:
    """y1 and the dense output at ``thetas``, straight from the tableau's fields."""
    y0 = _exact(t0)
    rows = [[Decimal(x) for x in r] for r in (*tab.a, *tab.extra_a)]
    nodes = [Decimal(x) for x in (*tab.c, *tab.extra_c)]
    k: list[list[Decimal]] = []
    for ci, row in zip(nodes, rows):
        k.append(
            _rhs(t0 + ci * dt, _axpy(y0, [(dt * aij, kj) for aij, kj in zip(row, k)]))
        )
    y1 = _axpy(y0, [(dt * Decimal(bi), ki) for bi, ki in zip(tab.b, k)])
    dense = []
    for th in thetas:
        if tab.interp is not None:
            w = [
                sum(Decimal(p) * th ** (j + 1) for j, p in enumerate(r))
                for r in tab.interp
            ]
            dense.append(_axpy(y0, [(dt * wi, ki) for wi, ki in zip(w, k)]))
        else:  # cubic Hermite on (y0, f0, y1, f1) with f1 = f(t1, y1)
            f1 = _rhs(t0 + dt, y1)
            h00 = 2 * th**3 - 3 * th**2 + 1
            h10 = th**3 - 2 * th**2 + th
            h01 = -2 * th**3 + 3 * th**2
            h11 = th**3 - th**2
            dense.append(
                [
                    h00 * a + h10 * dt * f0 + h01 * b + h11 * dt * g
                    for a, f0, b, g in zip(y0, k[0], y1, f1)
                ]
            )
    return y1, dense


def _dist(u: list[Decimal], v: list[Decimal]) -> Decimal:
    return max(abs(a - b) for a, b in zip(u, v))


@pytest.mark.parametrize("name", NAMES)
def test_measured_local_error_orders(name: str) -> None:
    tab = TABLEAUS[name]
    thetas = [Decimal("0.3"), Decimal("0.5"), Decimal("0.8")]
    t0 = Decimal("0.5")
    h0 = Decimal("0.2") if name == "dopri8" else Decimal("0.025")
    dense_err, step_err = [], []
    with localcontext() as ctx:
        ctx.prec = 40
        for dt in (h0, h0 / 2, h0 / 4):
            y1, dense = _one_step(tab, t0, dt, thetas)
            step_err.append(_dist(y1, _exact(t0 + dt)))
            dense_err.append(
                max(_dist(d, _exact(t0 + th * dt)) for d, th in zip(dense, thetas))
            )
    # Average slope over two halvings: local error ~ dt^(order + 1).
    dense_slope = math.log2(dense_err[0] / dense_err[2]) / 2
    step_slope = math.log2(step_err[0] / step_err[2]) / 2
    assert dense_slope == pytest.approx(tab.interp_order + 1, abs=0.25)
    assert step_slope == pytest.approx(tab.order + 1, abs=0.25)
