"""Fixed-grid explicit Runge-Kutta steps compiled with ``torch.compile``.

``options={'compile': True}`` on a fixed-step explicit method runs the steps in
chunks of :data:`DEFAULT_CHUNK` (or ``options={'compile': m}``: ``m`` steps), each
chunk, stage evaluations and combinations together, as one compiled function.
At small sizes a step's cost is PyTorch's per-operation dispatch and Python
rather than arithmetic, and a compiled call has a fixed cost of its own (its
guards and wrappers, some tens of microseconds on a CPU), so several steps per
call are what pays: on the 2-D spiral with rk4 a step takes about 26 us instead
of about 62. On large states, where the arithmetic dominates, it gains less.

The first solve pays the compilation, seconds, growing with the field's size and
the chunk length. Later solves with the same field, tableau, shapes and dtypes
reuse it (``torch.compile`` caches by code object, guarded on the closure's
contents), up to :data:`RECOMPILE_LIMIT` variants in a process, after which a
solve warns and runs uncompiled; so does a solve whose field has to be compiled
again and again (see :data:`MAX_COMPILES_PER_SOLVE`). Inductor may fuse and
reorder floating-point operations, so results agree with the uncompiled steps
to rounding, not to the last bit.

The compiled chunk calls the caller's ``func`` directly with each stage's time as
a tensor, so it applies where :class:`~torchnode._driver.field.Field` has no
per-call work left: the output checked once, no observer, no autograd inside
the field, no one-sided stage times (``perturb``). Elsewhere, and for the steps
left over after the last whole chunk, the ordinary step runs.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch

from .._numerics.tableau import ButcherTableau
from .._warn import warn
from .field import Field

__all__ = ["DEFAULT_CHUNK", "CompiledChunks", "compiled_chunks_for"]

# Steps per compiled call with options['compile'] = True.
DEFAULT_CHUNK = 8
# Compiled variants (fields, tableaus, chunk lengths, dtypes, shapes) kept.
RECOMPILE_LIMIT = 64
# Compilations one solve may trigger: the first, and one more where PyTorch
# makes a changing size or module integer dynamic. More means that the field's
# guards fail on every call, and compiling no longer pays.
MAX_COMPILES_PER_SOLVE = 2


def _compile_errors() -> tuple[type[Exception], ...]:
    """What a failure to compile raises (a field's own error, met while it is
    traced, comes as the first kind, and again from the ordinary step).
    Looked up when needed: importing ``torch._dynamo`` takes about a second."""
    exc = torch._dynamo.exc
    return (exc.TorchDynamoException, exc.FailOnRecompileLimitHit)


def _combine(k: list, weights: tuple[float, ...]) -> torch.Tensor | None:
    """``sum_j weights[j] * k[j]`` over the nonzero weights; ``None`` if none."""
    acc = None
    for k_j, w in zip(k, weights):
        if w != 0.0:
            term = k_j * w
            acc = term if acc is None else acc + term
    return acc


def _make_chunk(
    func: Any,
    unflatten: Any,
    flatten: Any,
    a: tuple[tuple[float, ...], ...],
    b: tuple[float, ...],
    fsal: bool,
    carry_f: bool,
    m: int,
) -> Any:
    """``m`` steps of the tableau ``(a, b)`` on ``func`` as a function of
    tensors only, so that compiling it specialises on ``func``, the tableau and
    ``m`` once.

    The chunk takes ``stage_t`` ``[m, s]`` (the stage times in the field's time
    dtype), ``dt`` ``[m]`` (working dtype), ``y0`` ``[N]`` and ``f0``, and
    returns the states after each step, ``[m, N]``. With ``carry_f`` (an FSAL
    method, or outputs interpolated from the field at both ends of a step),
    ``f0 = f(t0, y0)``, and the chunk also returns the field at each step's
    start, ``[m, N]``, and at the last state for an FSAL method (its last
    stage; else ``f0`` again, unused). Without, ``f0`` is ``None`` and so are
    those: each step evaluates its own first stage, which keeps the chunk lean.
    """

    def chunk(
        stage_t: torch.Tensor,
        dt: torch.Tensor,
        y0: torch.Tensor,
        f0: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        ys, fs = [], []
        y, f = y0, f0
        for j in range(m):
            t_j, h = stage_t[j], dt[j]
            if f is None or (j > 0 and not fsal):
                f = flatten(func(t_j[0], unflatten(y)))
            fs.append(f)
            k = [f]
            y_i = y
            for i in range(1, len(a)):
                incr = _combine(k, a[i])
                y_i = y if incr is None else y + h * incr
                k.append(flatten(func(t_j[i], unflatten(y_i))))
            if fsal:
                y, f = y_i, k[-1]
            else:
                incr = _combine(k, b)
                assert incr is not None
                y = y + h * incr
            ys.append(y)
        if not carry_f:
            return torch.stack(ys), None, None
        return torch.stack(ys), torch.stack(fs), f

    return chunk


class CompiledChunks:
    """Takes fixed-grid steps of ``tableau`` on ``field`` ``m`` at a time
    through one compiled function; counts its evaluations in ``field.nfe``.

    Args:
        field: the solve's field; its first output must have been checked.
        tableau: an explicit method's tableau.
        grid: the step end points, float64.
        m: steps per compiled call.
        carry_f: whether calls take ``f0`` and return the field at each step's
            start (see :func:`_make_chunk`); always for an FSAL method.
    """

    def __init__(
        self,
        field: Field,
        tableau: ButcherTableau,
        grid: list[float],
        m: int,
        carry_f: bool,
    ) -> None:
        self.field = field
        self.m = m
        self.n_stages = tableau.n_stages
        g = np.asarray(grid, dtype=np.float64)
        h = np.diff(g)
        c = np.asarray(tableau.c, dtype=np.float64)
        times = g[:-1, None] + h[:, None] * c[None, :]
        # A node at c = 1 is the step's end point to the last bit.
        times[:, c == 1.0] = g[1:, None]
        self.stage_t = torch.from_numpy(times).to(
            dtype=field.t_dtype, device=field.device
        )
        self.dt = torch.from_numpy(h).to(dtype=field.work_dtype, device=field.device)
        layout = field.layout
        work = field.work_dtype
        if field.plain:
            dims = field.dims
            assert dims is not None

            def unflatten(y: torch.Tensor) -> Any:
                return y.view(*dims)

            def flatten(out: Any) -> torch.Tensor:
                return out.reshape(-1)

        else:

            def unflatten(y: torch.Tensor) -> Any:
                return layout.unflatten(y)

            def flatten(out: Any) -> torch.Tensor:
                return layout.flatten(out, work)

        fsal = bool(tableau.fsal)
        self.carry_f = carry_f or fsal
        a = tuple(tuple(float(x) for x in row) for row in tableau.a)
        b = tuple(float(x) for x in tableau.b)
        # fullgraph: a field that would split the graph (Python branching on
        # tensor values, autograd inside) runs faster uncompiled, so it fails
        # here and falls back.
        fn = torch.compile(
            _make_chunk(field.func, unflatten, flatten, a, b, fsal, self.carry_f, m),
            fullgraph=True,
        )
        # A field that counts its calls (``self.nfe += 1``, a common idiom)
        # would otherwise be compiled anew for every value of the count; every
        # field, tableau and chunk length shares the one code object, whose
        # limit of compiled variants is raised from PyTorch's default of 8.
        self._fn = torch._dynamo.config.patch(
            allow_unspec_int_on_nn_module=True, recompile_limit=RECOMPILE_LIMIT
        )(fn)
        # Graphs compiled in this process, to tell when a call compiled anew.
        from torch._dynamo.utils import counters

        self._stats = counters["stats"]
        self._n_compiled = 0
        self.stopped = False
        # Field evaluations per chunk.
        s = tableau.n_stages
        self._nfe = m * (s - 1) if fsal else m * s - self.carry_f

    def fits(self, i: int) -> bool:
        """Whether a whole chunk starts at step ``i`` of the grid (and the
        chunks have not been stopped)."""
        return not self.stopped and i + self.m <= self.dt.shape[0]

    def __call__(
        self, i: int, y0: torch.Tensor, f0: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None:
        """Steps ``i`` to ``i + m - 1`` from ``y0`` (and ``f0 = f(t_i, y0)``
        with ``carry_f``, else ``None``): what :func:`_make_chunk`'s chunk
        returns. ``None`` when the call cannot be compiled (no C++ compiler, a
        field ``torch.compile`` cannot hold in one graph): a warning says why,
        and the caller goes on with the ordinary step. A call that compiled
        anew once too often (see :data:`MAX_COMPILES_PER_SOLVE`) warns and sets
        :attr:`stopped`; its result stands."""
        m = self.m
        args = (self.stage_t[i : i + m], self.dt[i : i + m], y0, f0)
        graphs = self._stats["unique_graphs"]
        try:
            out = self._fn(*args)
        except _compile_errors() as err:
            if isinstance(err, torch._dynamo.exc.FailOnRecompileLimitHit):
                reason = (
                    f"the process has used up its {RECOMPILE_LIMIT} compiled variants "
                    "of these steps (fields, tableaus, chunk lengths, dtypes)"
                )
            else:
                first_line = (str(err).strip().splitlines() or [""])[0]
                reason = f"{type(err).__name__}: {first_line[:300]}"
            warn(
                f"options['compile']: torch.compile failed ({reason}); this solve "
                "goes on without it",
                RuntimeWarning,
            )
            return None
        self.field.nfe += self._nfe
        if self._stats["unique_graphs"] != graphs:
            self._n_compiled += 1
            if self._n_compiled > MAX_COMPILES_PER_SOLVE:
                self.stopped = True
                warn(
                    "options['compile']: the field was compiled anew for chunk after "
                    "chunk: it reads Python state that changes between calls, such "
                    "as a call counter kept in a list or a global (keep it in a "
                    "tensor or an nn.Module integer attribute); the rest of this "
                    "solve goes on without compile",
                    RuntimeWarning,
                )
        return out


def compiled_chunks_for(
    field: Field,
    tableau: ButcherTableau | None,
    grid: list[float],
    perturb: bool,
    setting: bool | int,
    carry_f: bool,
) -> CompiledChunks | None:
    """A :class:`CompiledChunks` for ``options['compile'] = setting`` (for
    ``carry_f``, see :func:`_make_chunk`), or
    ``None`` where the ordinary step must run (an implicit stepper, one-sided
    stage times, or a field with per-call work: an observer, autograd inside,
    or an output not yet checked)."""
    if tableau is None or perturb or setting is False:
        return None
    if not field.checked or field.grad_inside or field.observer is not None:
        return None
    m = DEFAULT_CHUNK if setting is True else operator.index(setting)
    return CompiledChunks(field, tableau, grid, m, carry_f)
