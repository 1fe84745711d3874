"""Neural ODE layers: :class:`NeuralODE` and its augmented and second-order forms."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .._api import GRADIENT_MODES, solve
from .._driver.methods import resolve_method
from .._driver.solution import Stats
from .._numerics.norms import rms_norm
from .._numerics.tableau import ButcherTableau
from ._common import call_field, is_autonomous

__all__ = ["AugmentedNeuralODE", "NeuralODE", "SecondOrderNeuralODE"]

REGULARIZERS = ("kinetic", "jacobian")
PROBES = ("gaussian", "rademacher")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _per_sample(sq: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension but the first (the batch)."""
    return sq.reshape(sq.shape[0], -1).sum(dim=1)


def _reset(module: nn.Module) -> None:
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    for child in module.children():
        _reset(child)


class _StateNorm:
    """Error norm of a regularised solve: the state part only.

    The regularisation integrals ride along the solve but do not steer its
    steps, so adding them leaves the solution and its cost unchanged.
    """

    def __init__(self, user: Callable | None) -> None:
        self.user = user

    def __call__(self, parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.user is not None:
            return self.user(parts[0])
        return rms_norm(parts[0].reshape(-1))


class _System(nn.Module):
    """The first-order system handed to the solver: the field, plus the
    integrands of the regularisers as extra state parts when there are any."""

    def __init__(
        self,
        field: Callable,
        autonomous: bool,
        regularizers: tuple[str, ...],
        probe: torch.Tensor | None,
    ) -> None:
        super().__init__()
        self.field = field
        self.autonomous = autonomous
        self.regularizers = regularizers
        self.probe = probe

    def forward(self, t: torch.Tensor, state):
        if not self.regularizers:
            return call_field(self.field, self.autonomous, t, state)
        x = state[0]
        vjp = None
        if self.probe is not None:
            outer = torch.is_grad_enabled()
            with torch.enable_grad():
                xg = x if x.requires_grad else x.detach().requires_grad_()
                f = call_field(self.field, self.autonomous, t, xg)
                if f.requires_grad:
                    (vjp,) = torch.autograd.grad(
                        f, xg, self.probe, create_graph=outer, allow_unused=True
                    )
            if not outer:
                f = f.detach()
            if vjp is None:
                vjp = torch.zeros_like(x)
        else:
            f = call_field(self.field, self.autonomous, t, x)
        extra = []
        for name in self.regularizers:
            if name == "kinetic":
                extra.append(_per_sample(f.pow(2)))
            else:
                assert vjp is not None
                extra.append(_per_sample(vjp.pow(2)))
        return (f, *extra)


class NeuralODE(nn.Module):
    r"""A layer that maps ``x(t0)`` to ``x(T)`` by solving ``dx/dt = field(t, x)``.

    The field is an ``nn.Module`` called as ``field(t, x)`` with ``t`` a 0-dim
    tensor of ``x``'s dtype. Autonomous fields ``field(x)`` are accepted too.
    Which one is decided once, at construction: unless ``autonomous`` is given,
    a field whose ``forward`` takes exactly one required positional argument
    (and no ``*args``) is called as ``field(x)``, any other as ``field(t, x)``.
    For a ``torch.compile``-d module the signature of the module it wraps is
    read.

    ``t_span``, ``t_eval``, ``rtol`` and ``atol`` are buffers: ``.to(device)``
    moves them, ``state_dict`` saves them, and the tolerances may be changed at
    any time (``layer.rtol.fill_(1e-2)`` or :meth:`set_tolerances`). The
    tolerance buffers are kept in at least float32, so ``.half()`` does not round
    a small ``atol`` to zero. ``method`` and ``gradient`` are plain attributes.

    After each call the layer holds ``last_stats`` (the solve's
    :class:`torchnode.Stats`), ``nfe_forward`` and ``nfe_backward`` (the latter
    filled in once ``backward()`` has run) and ``regularization``.

    Regularisers (Finlay et al. 2020, "How to train your neural ODE"):
    ``'kinetic'`` integrates ``|f(t, x)|^2`` and ``'jacobian'`` integrates a
    Hutchinson estimate ``|e^T df/dx|^2`` of the squared Frobenius norm of the
    field's Jacobian, with one probe ``e`` (Gaussian or Rademacher, drawn from
    torch's global generator) per call, fixed within the solve. Both are
    integrated as extra state along the same solve, per sample (the first
    dimension of ``x`` is the batch), over the whole solve (to the last
    ``t_eval`` time when given), and left out of the step-size control. After
    ``forward`` the batch means are in ``layer.regularization`` (a dict keyed by
    name) for the caller to weight into the loss. They work with every gradient
    mode; the Jacobian term differentiates the field inside each evaluation and
    needs a field made of operations with double backward.

    Args:
        field: the vector field, an ``nn.Module`` (or any callable).
        t_span: ``(t0, T)``; ``t0`` is the initial time.
        method: a method name (see :func:`torchnode.methods`) or a
            :class:`torchnode.ButcherTableau`.
        rtol, atol: tolerances of adaptive methods.
        gradient: ``'adjoint'``, ``'direct'`` or ``'checkpoint'``; see
            :func:`torchnode.solve`. With ``'adjoint'`` the field's parameters
            are passed as ``adjoint_params``, so they, and only they, receive
            gradients from the backward solve (what DDP expects).
        t_eval: output times; when given ``forward`` returns the trajectory at
            these times. The solve still starts at ``t_span[0]``; ``t_eval``
            must run from there in ``t_span``'s direction (``t_span[1]`` is then
            unused).
        options: method options (see :func:`torchnode.solve`).
        adjoint_options, adjoint_rtol, adjoint_atol: the backward solve's
            settings with ``gradient='adjoint'``; the forward ones by default.
        regularizers: any of ``'kinetic'`` and ``'jacobian'``.
        probe: ``'gaussian'`` or ``'rademacher'``, the Hutchinson probe.
        autonomous: ``None`` to decide from the field's signature, else
            whether the field is called as ``field(x)``.
        device, dtype: factory arguments for the time buffers.

    Shape:
        - Input: ``[B, *]``, any shape the field accepts.
        - Output: ``[B, *]`` (the state at ``t_span[1]``), or
          ``[len(t_eval), B, *]`` when ``t_eval`` is given.

    Examples::

        >>> layer = NeuralODE(MLPField(2), t_span=(0.0, 1.0))
        >>> layer(torch.randn(8, 2)).shape
        torch.Size([8, 2])
    """

    t_span: torch.Tensor
    t_eval: torch.Tensor | None
    rtol: torch.Tensor
    atol: torch.Tensor

    def __init__(
        self,
        field: Callable,
        t_span: Sequence[float] | torch.Tensor = (0.0, 1.0),
        *,
        method: str | ButcherTableau = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        gradient: str = "adjoint",
        t_eval: Sequence[float] | torch.Tensor | None = None,
        options: dict[str, Any] | None = None,
        adjoint_options: dict[str, Any] | None = None,
        adjoint_rtol: float | None = None,
        adjoint_atol: float | None = None,
        regularizers: Sequence[str] = (),
        probe: str = "gaussian",
        autonomous: bool | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.field = field
        self.autonomous = is_autonomous(field, autonomous)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        span = torch.as_tensor(t_span, dtype=dtype, device=device).detach().clone()
        if span.shape != (2,):
            raise ValueError(
                f"t_span must hold two times (t0, T), but got shape {tuple(span.shape)}"
            )
        if bool(span[0] == span[1]):
            raise ValueError(f"t_span must have t0 != T, but got {span.tolist()}")
        self.register_buffer("t_span", span)
        evals = None
        if t_eval is not None:
            evals = torch.as_tensor(t_eval, dtype=dtype, device=device).detach()
            evals = evals.clone()
            if evals.ndim != 1 or evals.numel() < 1:
                raise ValueError(
                    f"t_eval must be a 1-D sequence of times, but got shape "
                    f"{tuple(evals.shape)}"
                )
        self.register_buffer("t_eval", evals)
        tol_dtype = torch.float32 if dtype in _LOW_PRECISION else dtype
        self.register_buffer("rtol", torch.tensor(0.0, dtype=tol_dtype, device=device))
        self.register_buffer("atol", torch.tensor(0.0, dtype=tol_dtype, device=device))
        self.set_tolerances(rtol, atol)
        self.method = method
        self.gradient = gradient
        self.options = dict(options or {})
        self.adjoint_options = (
            None if adjoint_options is None else dict(adjoint_options)
        )
        self.adjoint_rtol = adjoint_rtol
        self.adjoint_atol = adjoint_atol
        regs = tuple(regularizers)
        for name in regs:
            if name not in REGULARIZERS:
                raise ValueError(
                    f"regularizers must be drawn from {REGULARIZERS}, but got {name!r}"
                )
        if len(set(regs)) != len(regs):
            raise ValueError(f"regularizers has repeated names: {regs}")
        if probe not in PROBES:
            raise ValueError(f"probe must be one of {PROBES}, but got {probe!r}")
        self.regularizers = regs
        self.probe = probe
        self.last_stats: Stats | None = None
        self.regularization: dict[str, torch.Tensor] = {}

    # -- settings ---------------------------------------------------------------

    @property
    def method(self) -> str | ButcherTableau:
        """The solver method; checked when set."""
        return self._method

    @method.setter
    def method(self, value: str | ButcherTableau) -> None:
        resolve_method(value)
        self._method = value

    @property
    def gradient(self) -> str:
        """The gradient mode: ``'adjoint'``, ``'direct'`` or ``'checkpoint'``."""
        return self._gradient

    @gradient.setter
    def gradient(self, value: str) -> None:
        if value not in GRADIENT_MODES:
            raise ValueError(
                f"gradient must be one of {', '.join(GRADIENT_MODES)}, but got "
                f"{value!r}"
            )
        self._gradient = value

    def set_tolerances(self, rtol: float, atol: float | None = None) -> None:
        """Sets the relative (and optionally absolute) tolerance in place."""
        for name, value in (("rtol", rtol), ("atol", atol)):
            if value is None:
                continue
            v = float(value)
            if not v >= 0:
                raise ValueError(f"{name} must be >= 0, but got {value}")
            with torch.no_grad():
                getattr(self, name).fill_(v)

    def reset_parameters(self) -> None:
        """Resets the field's parameters (every submodule's ``reset_parameters``)."""
        if isinstance(self.field, nn.Module):
            _reset(self.field)

    def _apply(self, fn, recurse=True):
        saved = {name: self._buffers[name] for name in ("rtol", "atol")}
        out = super()._apply(fn, recurse)
        for name, old in saved.items():
            new = self._buffers[name]
            if old is not None and new is not None and new.dtype in _LOW_PRECISION:
                self._buffers[name] = old.to(device=new.device, dtype=torch.float32)
        return out

    # -- statistics ------------------------------------------------------------

    @property
    def nfe_forward(self) -> int:
        """Field evaluations of the last forward solve (0 before any)."""
        return 0 if self.last_stats is None else self.last_stats.nfe

    @property
    def nfe_backward(self) -> int:
        """Field evaluations of the last solve's backward pass (0 until run)."""
        return 0 if self.last_stats is None else self.last_stats.nfe_backward

    # -- solving ---------------------------------------------------------------

    def _rhs(self) -> tuple[Callable, bool]:
        """The first-order field the solver integrates, and its convention."""
        return self.field, self.autonomous

    def _times(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else None
        span = self.t_span.to(device=x.device, dtype=dtype)
        if self.t_eval is None:
            return span, False
        evals = self.t_eval.to(device=x.device, dtype=dtype)
        if bool(evals[0] == span[0]):
            return evals, False
        return torch.cat([span[:1], evals]), True

    def _probe(self, x: torch.Tensor) -> torch.Tensor | None:
        if "jacobian" not in self.regularizers:
            return None
        if self.probe == "gaussian":
            return torch.randn_like(x)
        return torch.randint_like(x, 0, 2).mul_(2).sub_(1)

    def _solve(self, x: torch.Tensor) -> torch.Tensor:
        """Solves from ``x``; returns ``[T, *x.shape]`` at the output times."""
        times, drop_first = self._times(x)
        field, autonomous = self._rhs()
        regs = self.regularizers
        options = dict(self.options)
        if regs:
            if x.ndim < 1:
                raise ValueError("regularizers need a state with a batch dimension")
            state: Any = (x, *(x.new_zeros(x.shape[:1]) for _ in regs))
            if resolve_method(self.method).adaptive:
                options["norm"] = _StateNorm(options.get("norm"))
        else:
            state = x
        system = _System(field, autonomous, regs, self._probe(x))
        params = None
        if self.gradient == "adjoint" and isinstance(self.field, nn.Module):
            params = tuple(p for p in self.field.parameters() if p.requires_grad)
        sol = solve(
            system,
            state,
            times,
            method=self.method,
            rtol=float(self.rtol),
            atol=float(self.atol),
            options=options,
            gradient=self.gradient,
            adjoint_rtol=self.adjoint_rtol,
            adjoint_atol=self.adjoint_atol,
            adjoint_options=self.adjoint_options,
            adjoint_params=params,
        )
        self.last_stats = sol.stats
        if regs:
            ys, *integrals = sol.ys
            self.regularization = {
                name: v[-1].mean() for name, v in zip(regs, integrals)
            }
        else:
            ys = sol.ys
            self.regularization = {}
        return ys[1:] if drop_first else ys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The state at ``t_span[1]``, or the trajectory at ``t_eval``."""
        ys = self._solve(x)
        return ys if self.t_eval is not None else ys[-1]

    def extra_repr(self) -> str:
        method = self.method if isinstance(self.method, str) else self.method.name
        parts = [
            f"t_span={tuple(self.t_span.tolist())}",
            f"method={method!r}",
            f"gradient={self.gradient!r}",
            f"rtol={float(self.rtol):g}",
            f"atol={float(self.atol):g}",
        ]
        if self.t_eval is not None:
            parts.append(f"t_eval=<{self.t_eval.numel()} times>")
        if self.regularizers:
            parts.append(f"regularizers={self.regularizers}, probe={self.probe!r}")
        return ", ".join(parts)


class AugmentedNeuralODE(NeuralODE):
    """A neural ODE on the state padded with extra dimensions (Dupont et al. 2019,
    "Augmented neural ODEs").

    The input ``x`` gets ``augment_dim`` extra entries along ``channel_dim``
    (dim 1: the features of a vector batch ``[B, D]``, the channels of an image
    batch ``[B, C, H, W]``), the padded state is solved, and the first ``C``
    entries along ``channel_dim`` are returned (all of them with
    ``return_augmented=True``). The field works on the padded state: for
    ``MLPField`` its ``dim`` is ``D + augment_dim``, for ``ConvField`` its
    ``channels`` is ``C + augment_dim``.

    The extra entries are zeros (``augment='zeros'``), or a learned linear map of
    the input's entries at the same position (``augment='learned'``): an
    ``nn.Linear(in_features, augment_dim)`` applied along ``channel_dim``, which
    for images is a 1x1 convolution.

    Args:
        field: the vector field on the padded state.
        augment_dim: number of extra dimensions (``>= 1``).
        augment: ``'zeros'`` or ``'learned'``.
        return_augmented: return the whole padded state.
        channel_dim: the dimension to pad.
        in_features: the input's size along ``channel_dim``, needed by
            ``augment='learned'``; read from the field's ``dim`` or
            ``channels`` attribute minus ``augment_dim`` when not given.
        t_span, method, rtol, atol, gradient, t_eval, options, **kwargs: as for
            :class:`NeuralODE`.
        device, dtype: factory arguments for the buffers and the learned map.

    Shape:
        - Input: ``[B, C, *]`` (``channel_dim=1``).
        - Output: ``[B, C, *]``, or ``[B, C + augment_dim, *]`` with
          ``return_augmented=True``; with ``t_eval``, ``[len(t_eval)]`` in
          front.
    """

    def __init__(
        self,
        field: Callable,
        augment_dim: int,
        *,
        t_span: Sequence[float] | torch.Tensor = (0.0, 1.0),
        method: str | ButcherTableau = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        gradient: str = "adjoint",
        t_eval: Sequence[float] | torch.Tensor | None = None,
        options: dict[str, Any] | None = None,
        augment: str = "zeros",
        return_augmented: bool = False,
        channel_dim: int = 1,
        in_features: int | None = None,
        device=None,
        dtype=None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            field,
            t_span,
            method=method,
            rtol=rtol,
            atol=atol,
            gradient=gradient,
            t_eval=t_eval,
            options=options,
            device=device,
            dtype=dtype,
            **kwargs,
        )
        if augment_dim < 1:
            raise ValueError(f"augment_dim must be >= 1, but got {augment_dim}")
        if augment not in ("zeros", "learned"):
            raise ValueError(
                f"augment must be 'zeros' or 'learned', but got {augment!r}"
            )
        self.augment_dim = augment_dim
        self.augment = augment
        self.return_augmented = return_augmented
        self.channel_dim = channel_dim
        self.augment_map: nn.Linear | None = None
        if augment == "learned":
            if in_features is None:
                size = getattr(field, "dim", getattr(field, "channels", None))
                if not isinstance(size, int):
                    raise ValueError(
                        "augment='learned' needs in_features (the input's size "
                        "along channel_dim); the field has no dim or channels "
                        "attribute to read it from"
                    )
                in_features = size - augment_dim
            if in_features < 1:
                raise ValueError(f"in_features must be >= 1, but got {in_features}")
            self.augment_map = nn.Linear(
                in_features, augment_dim, device=device, dtype=dtype
            )
        self.in_features = in_features

    def reset_parameters(self) -> None:
        """Resets the field and the learned augmentation map."""
        super().reset_parameters()
        if self.augment_map is not None:
            self.augment_map.reset_parameters()

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        d = self.channel_dim
        if self.augment_map is None:
            shape = list(x.shape)
            shape[d] = self.augment_dim
            extra = x.new_zeros(shape)
        else:
            moved = torch.movedim(x, d, -1)
            extra = torch.movedim(self.augment_map(moved), -1, d)
        return torch.cat([x, extra], dim=d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The solved state, without the extra dimensions unless asked."""
        ys = self._solve(self._pad(x))
        if self.t_eval is None:
            ys = ys[-1]
        if self.return_augmented:
            return ys
        d = self.channel_dim
        if self.t_eval is not None and d >= 0:
            d += 1
        return ys.narrow(d, 0, x.shape[self.channel_dim])

    def extra_repr(self) -> str:
        return (
            f"augment_dim={self.augment_dim}, augment={self.augment!r}, "
            f"channel_dim={self.channel_dim}, "
            f"return_augmented={self.return_augmented}, " + super().extra_repr()
        )


class _Acceleration(nn.Module):
    """``d[x, v]/dt = [v, f(t, [x, v])]`` on the state ``[x, v]``."""

    def __init__(self, field: Callable, autonomous: bool) -> None:
        super().__init__()
        self.field = field
        self.autonomous = autonomous

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        v = z[..., z.shape[-1] // 2 :]
        a = call_field(self.field, self.autonomous, t, z)
        if a.shape != v.shape:
            raise ValueError(
                f"a second-order field must return the acceleration, shaped like x "
                f"{tuple(v.shape)}, but returned {tuple(a.shape)}; an MLPField "
                f"here needs dim=2*D and out_dim=D"
            )
        return torch.cat([v, a], dim=-1)


class SecondOrderNeuralODE(NeuralODE):
    """A neural ODE of second order: ``x'' = field(t, x, x')``.

    It is solved as the first-order system on the state ``z = [x, v]``
    (``x`` and ``v = x'`` concatenated on the last dimension). The field is
    called as ``field(t, z)`` (or ``field(z)``: the rule of :class:`NeuralODE`)
    and returns the acceleration, shaped like ``x``; for an :class:`MLPField`
    use ``dim=2 * D, out_dim=D``.

    ``forward(x, v=None)`` starts from position ``x`` and velocity ``v``
    (zeros when not given) and returns ``z(T) = [x(T), v(T)]``, or ``x(T)`` only
    with ``return_velocity=False``.

    Args:
        field: the acceleration field.
        return_velocity: return ``[x, v]`` rather than ``x``.
        t_span, **kwargs: as for :class:`NeuralODE`; the regularisers apply to
            the first-order system.

    Shape:
        - x, v: ``[*, D]``.
        - Output: ``[*, 2 * D]`` (``[*, D]`` with ``return_velocity=False``);
          with ``t_eval``, ``[len(t_eval)]`` in front.
    """

    def __init__(
        self,
        field: Callable,
        t_span: Sequence[float] | torch.Tensor = (0.0, 1.0),
        *,
        return_velocity: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(field, t_span, **kwargs)
        self.return_velocity = return_velocity

    def _rhs(self) -> tuple[Callable, bool]:
        return _Acceleration(self.field, self.autonomous), False

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, v: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The state ``[x, v]`` (or ``x``) at ``t_span[1]`` or at ``t_eval``."""
        if v is None:
            v = torch.zeros_like(x)
        elif v.shape != x.shape:
            raise ValueError(
                f"v must be shaped like x {tuple(x.shape)}, but got {tuple(v.shape)}"
            )
        ys = self._solve(torch.cat([x, v], dim=-1))
        if self.t_eval is None:
            ys = ys[-1]
        return ys if self.return_velocity else ys[..., : x.shape[-1]]

    def extra_repr(self) -> str:
        return f"return_velocity={self.return_velocity}, " + super().extra_repr()
