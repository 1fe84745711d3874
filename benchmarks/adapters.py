"""One adapter per library, all exposing the same small interface.

``Adapter.prepare(field, spec)`` returns a callable ``solve(y0, t)`` giving the
solution at the times ``t`` as a tensor of shape ``[len(t), *y0.shape]``. It is
differentiable when ``spec.mode`` is a gradient mode. States are always
``[batch, dim]``. Only the public API of each library is used.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

Solve = Callable[[Tensor, Tensor], Tensor]
GRAD_MODES = ("direct", "adjoint", "checkpoint")


@dataclass(frozen=True)
class Spec:
    """What to solve with: method, tolerances and gradient mode.

    ``mode`` is "forward" (no gradient needed) or one of ``GRAD_MODES``.
    """

    method: str
    rtol: float
    atol: float
    options: dict[str, Any] | None = None
    mode: str = "forward"
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None
    seminorm: bool = False
    # torchnode only: options['compile'] (the others run their usual step).
    compile: bool = False


class Adapter:
    name = ""
    module = ""
    methods: frozenset[str] = frozenset()
    modes: frozenset[str] = frozenset({"forward", "direct"})
    seminorm = False

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.version = _version(self.name, lib)

    def unsupported(self, spec: Spec) -> str | None:
        """Why ``spec`` cannot run here, or None when it can."""
        if spec.method not in self.methods:
            return f"no method {spec.method}"
        if spec.mode not in self.modes:
            return f"no {spec.mode} gradient mode"
        if spec.seminorm and not self.seminorm:
            return "no adjoint seminorm option"
        return None

    def prepare(self, field: nn.Module, spec: Spec) -> Solve:
        raise NotImplementedError


def _version(name: str, lib: Any) -> str:
    version = getattr(lib, "__version__", None)
    if version:
        return str(version)
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class TorchdiffeqAdapter(Adapter):
    name = module = "torchdiffeq"
    methods = frozenset({"dopri5", "rk4"})
    modes = frozenset({"forward", "direct", "adjoint"})
    seminorm = True

    def prepare(self, field: nn.Module, spec: Spec) -> Solve:
        kw = {
            "rtol": spec.rtol,
            "atol": spec.atol,
            "method": spec.method,
            "options": spec.options,
        }
        if spec.mode != "adjoint":
            return lambda y0, t: self.lib.odeint(field, y0, t, **kw)
        kw.update(_adjoint_kwargs(spec))
        return lambda y0, t: self.lib.odeint_adjoint(field, y0, t, **kw)


def _adjoint_kwargs(spec: Spec) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "adjoint_rtol": spec.adjoint_rtol or spec.rtol,
        "adjoint_atol": spec.adjoint_atol or spec.atol,
    }
    if spec.seminorm:
        kw["adjoint_options"] = {"norm": "seminorm"}
    return kw


class TorchnodeAdapter(TorchdiffeqAdapter):
    """torchnode: the torchdiffeq-compatible calls, plus ``solve`` for checkpoint."""

    name = module = "torchnode"
    methods = frozenset({"dopri5", "tsit5", "rk4"})
    modes = frozenset({"forward", "direct", "adjoint", "checkpoint"})

    def unsupported(self, spec: Spec) -> str | None:
        needs = {"adjoint": "odeint_adjoint", "checkpoint": "solve"}.get(spec.mode)
        if needs and not hasattr(self.lib, needs):
            return f"no torchnode.{needs}"
        return super().unsupported(spec)

    def prepare(self, field: nn.Module, spec: Spec) -> Solve:
        if spec.compile:
            spec = replace(spec, options={**(spec.options or {}), "compile": True})
        if spec.mode != "checkpoint":
            return super().prepare(field, spec)
        kw = {
            "method": spec.method,
            "rtol": spec.rtol,
            "atol": spec.atol,
            "options": spec.options,
            "gradient": "checkpoint",
        }
        return lambda y0, t: self.lib.solve(field, y0, t, **kw).ys


class TorchodeAdapter(Adapter):
    """torchode: batched problems with one step size per batch row.

    Its adjoint (``BacksolveAdjoint``) takes one step size controller for both
    directions, so the adjoint tolerances equal the forward ones there.
    """

    name = module = "torchode"
    methods = frozenset({"dopri5", "tsit5"})
    modes = frozenset({"forward", "direct", "adjoint"})

    def unsupported(self, spec: Spec) -> str | None:
        reason = super().unsupported(spec)
        if reason is None and spec.mode == "adjoint" and _has_adjoint_tol(spec):
            return "adjoint tolerances cannot differ from forward ones"
        return reason

    def prepare(self, field: nn.Module, spec: Spec) -> Solve:
        to = self.lib
        term = to.ODETerm(field)
        steppers = {"dopri5": to.Dopri5, "tsit5": to.Tsit5}
        step = steppers[spec.method](term=term)
        control = to.IntegralController(atol=spec.atol, rtol=spec.rtol, term=term)
        if spec.mode == "adjoint":
            solver = to.BacksolveAdjoint(term, step, control)
        else:
            solver = to.AutoDiffAdjoint(step, control)

        def solve(y0: Tensor, t: Tensor) -> Tensor:
            t_eval = t.to(y0.dtype).expand(y0.shape[0], -1)
            problem = to.InitialValueProblem(y0=y0, t_eval=t_eval)
            sol = solver.solve(problem)
            if bool((sol.status != 0).any()):
                raise RuntimeError(f"torchode status {sol.status.unique().tolist()}")
            return sol.ys.transpose(0, 1)

        return solve


def _has_adjoint_tol(spec: Spec) -> bool:
    rtol = spec.adjoint_rtol not in (None, spec.rtol)
    return rtol or spec.adjoint_atol not in (None, spec.atol)


class TorchdynAdapter(Adapter):
    """torchdyn's ``NeuralODE``, given solver objects built in the state's dtype
    (a solver named by string keeps float32 coefficients); the adjoint reuses the
    forward solver object. Fixed-step methods step
    along ``t_span``, so a step size becomes a uniform grid over the interval."""

    name = module = "torchdyn"
    methods = frozenset({"dopri5", "tsit5", "rk4"})
    modes = frozenset({"forward", "direct", "adjoint"})
    solvers: ClassVar[dict[str, str]] = {
        "dopri5": "DormandPrince45",
        "tsit5": "Tsitouras45",
        "rk4": "RungeKutta4",
    }

    def prepare(self, field: nn.Module, spec: Spec) -> Solve:
        models: dict[torch.dtype, nn.Module] = {}
        step = (spec.options or {}).get("step_size")

        def solve(y0: Tensor, t: Tensor) -> Tensor:
            if y0.dtype not in models:
                models[y0.dtype] = self._model(field, spec, y0.dtype)
            model = models[y0.dtype]
            if step is None:
                return model(y0, t)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Setting tolerances has no effect")
                return model(y0, _uniform_grid(t, step))[[0, -1]]

        return solve

    def _model(self, field: nn.Module, spec: Spec, dtype: torch.dtype) -> nn.Module:
        from torchdyn.core import NeuralODE

        numerics = importlib.import_module("torchdyn.numerics")
        solver_cls = getattr(numerics, self.solvers[spec.method])
        kw: dict[str, Any] = {"rtol": spec.rtol, "atol": spec.atol}
        kw["sensitivity"] = "adjoint" if spec.mode == "adjoint" else "autograd"
        kw["rtol_adjoint"] = spec.adjoint_rtol or spec.rtol
        kw["atol_adjoint"] = spec.adjoint_atol or spec.atol
        # It prints a notice for fields without parameters; keep the table clean.
        with contextlib.redirect_stdout(io.StringIO()):
            return NeuralODE(
                field, solver=solver_cls(dtype=dtype), return_t_eval=False, **kw
            )


def _uniform_grid(t: Tensor, step: float) -> Tensor:
    if t.numel() != 2:
        raise ValueError("fixed-step grids are built for two time points only")
    n = round(float(t[1] - t[0]) / step)
    return torch.linspace(
        float(t[0]), float(t[1]), n + 1, dtype=t.dtype, device=t.device
    )


ADAPTERS: tuple[type[Adapter], ...] = (
    TorchnodeAdapter,
    TorchdiffeqAdapter,
    TorchodeAdapter,
    TorchdynAdapter,
)


def load_adapters(names: list[str] | None = None) -> tuple[list[Adapter], list[str]]:
    """Adapters for the importable libraries, and a note for each one skipped."""
    loaded: list[Adapter] = []
    notes: list[str] = []
    for cls in ADAPTERS:
        if names is not None and cls.name not in names:
            continue
        try:
            lib = importlib.import_module(cls.module)
            if cls is TorchnodeAdapter:
                _check_torchnode(lib)
        except Exception as exc:
            notes.append(f"{cls.name} skipped: {type(exc).__name__}: {exc}")
            continue
        loaded.append(cls(lib))
    return loaded, notes


def _check_torchnode(lib: Any) -> None:
    if not hasattr(lib, "odeint"):
        raise ImportError("torchnode has no odeint yet")
