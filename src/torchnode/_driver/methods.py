"""Method names to solve loops, and the option keys each accepts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._numerics.tableau import ButcherTableau
from .._numerics.tableaus import TABLEAUS
from .adaptive import RunResult, integrate_adaptive
from .fixed import integrate_fixed
from .problem import (
    ADAMS_OPTIONS,
    ADAPTIVE_OPTIONS,
    EXPLICIT_FIXED_OPTIONS,
    Problem,
)

__all__ = ["MethodSpec", "method_names", "resolve_method"]

DEFAULT_METHOD = "dopri5"


@dataclass(frozen=True)
class MethodSpec:
    """A resolved method: its name, whether it adapts its step, its options, and
    how to run it."""

    name: str
    adaptive: bool
    options: frozenset
    tableau: ButcherTableau | None
    run: Callable[..., RunResult]
    # Whether rtol/atol mean anything to the method (not to explicit fixed-grid
    # Runge-Kutta methods, which then need no tolerance checks).
    uses_tolerances: bool = True


def _extra_methods() -> dict[str, MethodSpec]:
    return {**_adams_methods(), **_rosenbrock_methods(), **_implicit_methods()}


def _adams_methods() -> dict[str, MethodSpec]:
    try:
        from .._numerics.adams import ADAMS_METHODS
    except ImportError:
        return {}
    return {
        name: MethodSpec(name, False, ADAMS_OPTIONS, None, integrate)
        for name, integrate in ADAMS_METHODS.items()
    }


def _implicit_methods() -> dict[str, MethodSpec]:
    try:
        from .._numerics.implicit import (
            IMPLICIT_ADAPTIVE_OPTIONS,
            IMPLICIT_FIXED_OPTIONS,
            IMPLICIT_METHODS,
        )
    except ImportError:
        return {}
    specs = {}
    for name, (adaptive, integrate) in IMPLICIT_METHODS.items():
        opts = IMPLICIT_ADAPTIVE_OPTIONS if adaptive else IMPLICIT_FIXED_OPTIONS
        specs[name] = MethodSpec(name, adaptive, opts, None, integrate)
    return specs


def _rosenbrock_methods() -> dict[str, MethodSpec]:
    try:
        from .._numerics.rosenbrock import ROSENBROCK_METHODS
    except ImportError:
        return {}
    return {
        name: MethodSpec(name, True, ADAPTIVE_OPTIONS, None, integrate)
        for name, integrate in ROSENBROCK_METHODS.items()
    }


def method_names() -> list[str]:
    """Every built-in method name."""
    return sorted([*TABLEAUS, *_extra_methods()])


def _spec_for_tableau(tab: ButcherTableau) -> MethodSpec:
    if tab.adaptive:
        return MethodSpec(
            tab.name,
            True,
            ADAPTIVE_OPTIONS,
            tab,
            lambda p, **kw: integrate_adaptive(p, tab, **kw),
        )
    return MethodSpec(
        tab.name,
        False,
        EXPLICIT_FIXED_OPTIONS,
        tab,
        lambda p, record_steps=False, **kw: integrate_fixed(
            p, tab, record_steps=record_steps
        ),
        uses_tolerances=False,
    )


def resolve_method(method: str | ButcherTableau | None) -> MethodSpec:
    """The :class:`MethodSpec` for a name or a user tableau.

    Raises:
        ValueError: an unknown name; the message lists the valid ones.
        TypeError: neither a string nor a :class:`ButcherTableau`.
    """
    if method is None:
        method = DEFAULT_METHOD
    if isinstance(method, ButcherTableau):
        return _spec_for_tableau(method)
    if not isinstance(method, str):
        raise TypeError(
            f"method must be a method name or a ButcherTableau, but got "
            f"{type(method).__name__}"
        )
    if method in TABLEAUS:
        return _spec_for_tableau(TABLEAUS[method])
    extra = _extra_methods()
    if method in extra:
        return extra[method]
    raise ValueError(
        f"unknown method {method!r}; valid methods: {', '.join(method_names())}"
    )


def run_problem(spec: MethodSpec, problem: Problem, **kw) -> RunResult:
    """Runs the solve loop of ``spec`` on ``problem``."""
    if not spec.adaptive:
        kw.pop("dense", None)
        kw.pop("event_hook", None)
    return spec.run(problem, **kw)
