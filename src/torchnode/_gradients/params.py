"""Which tensors a vector field depends on, for the modes that differentiate it
outside the forward graph (adjoint and checkpoint).

Parameters and gradient-carrying buffers of an ``nn.Module`` field are found by
attribute; tensors it captures from elsewhere (a closure, a tensor computed from
an encoder's output) are found by walking the autograd graph of one evaluation.
Leaf tensors found that way join the parameters; others cannot be reached and
raise, so no gradient is ever silently dropped. That evaluation is the field at
the start of the solve, which the solve then reuses as its first one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._driver.problem import Problem
from .._warn import warn

__all__ = ["collect_params", "run_without_graph"]


def _module_tensors(func) -> list[torch.Tensor]:
    if not isinstance(func, torch.nn.Module):
        return []
    found: list[torch.Tensor] = [p for p in func.parameters() if p.requires_grad]
    found += [b for b in func.buffers() if b.requires_grad]
    return found


def _describe(x: torch.Tensor) -> str:
    return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"


def _walk(
    out: torch.Tensor, known: Sequence[torch.Tensor], first_node: int
) -> tuple[list[torch.Tensor], bool]:
    """Leaf tensors requiring grad that ``out`` depends on beyond ``known``,
    and whether its graph reaches nodes made before the evaluation (whose
    sequence numbers are below ``first_node``): a caller's graph, such as a
    tensor computed from a parameter outside the field, which each backward
    product must leave intact."""
    leaf_ids = {id(x) for x in known if x.grad_fn is None}
    stop_nodes = {id(x.grad_fn) for x in known if x.grad_fn is not None}
    found: list[torch.Tensor] = []
    shared = False
    seen: set[int] = set()
    stack = [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen or id(node) in stop_nodes:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None:
            if id(variable) not in leaf_ids:
                leaf_ids.add(id(variable))
                found.append(variable)
            continue
        shared = shared or node._sequence_nr() < first_node
        stack.extend(fn for fn, _ in node.next_functions)
    return found, shared


def collect_params(
    problem: Problem, explicit: Sequence[torch.Tensor] | None, mode: str
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The tensors whose gradients the backward pass must compute, and the
    field at ``(t[0], y0)``.

    Args:
        problem: the normalised problem (its field and initial state).
        explicit: ``adjoint_params`` if the caller gave them.
        mode: the gradient mode's name, for messages.

    Returns:
        The tensors, and ``f0 = field(t[0], y0)`` ``[N]`` detached (``None``
        when autograd is off and no evaluation was needed). ``f0`` comes from
        the evaluation whose graph is walked; it is counted in the field's
        ``nfe``, and the solve starts from it (``Problem.f0``), so discovery
        costs no extra evaluation.

    Leaves found by walking the graph are added (reached through any non-leaf
    tensors in between) when ``explicit`` is ``None``; with ``explicit`` they
    are reported in a warning and left out, as the caller chose.
    """
    func = problem.field.func
    if explicit is not None:
        base = [p for p in explicit if isinstance(p, torch.Tensor) and p.requires_grad]
    else:
        base = _module_tensors(func)
    if not torch.is_grad_enabled():
        return base, None
    y = problem.y0.detach().requires_grad_()
    with torch.enable_grad():
        # Autograd numbers its nodes in order of creation: this one's number
        # tells the evaluation's own nodes from those of a graph made before.
        marker = y.view_as(y).grad_fn
        assert marker is not None  # y requires grad
        first_node = marker._sequence_nr()
        out = problem.field(problem.t[0], y)
    f0 = out.detach()
    if out.grad_fn is None:
        return base, f0
    extra, shared = _walk(out, [y, *base], first_node)
    if shared or extra:
        # Products in the backward pass may go through the caller's graph and
        # must not free it (tensors found only by the walk are counted in:
        # numbering is per thread, so a graph built on another one may not
        # show as older).
        problem.field.captured_through_graph = True
    if not extra:
        return base, f0
    names = ", ".join(_describe(x) for x in extra)
    if explicit is not None:
        warn(
            f"the field depends on {len(extra)} tensor(s) requiring grad that are not "
            f"in adjoint_params ({names}); gradient={mode!r} gives them no gradient. "
            "Add them to adjoint_params.",
            UserWarning,
        )
        return base, f0
    return base + extra, f0


def run_without_graph(run):
    """Runs ``run()`` without recording a graph (the field wrapper switches to
    autograd inside each evaluation if the field differentiates itself)."""
    with torch.no_grad():
        return run()
