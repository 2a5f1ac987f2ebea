"""Predictions and targets read from the autograd graph of a hand-written loss.

defib sees a loss through the calls it hooks (``F.mse_loss``, ``nn.CrossEntropyLoss``), which hand it
the predictions and the targets. A loss written with tensor ops (``((pred - y) ** 2).mean()``,
``-F.log_softmax(logits, -1).gather(1, y[:, None]).mean()``) calls nothing defib hooks, but the
tensor ``backward()`` receives carries the same facts in its graph: the grad_fn nodes say which
arithmetic built the loss, and keep what they need for the gradient (the difference a square or an
absolute value saves, the class ids a gather or an index saves, the log-probabilities a log_softmax
saves). What a node does not keep, the predictions entering a subtraction, comes from a mark: the
forward hook leaves a detached alias of every small module output in its grad_fn's metadata, so the
mark lives and dies with the user's graph and nothing here outlives a step.

Nothing is read on the host here (no ``.item()``, no ``.cpu()``): the tensors go to
:meth:`LossEvidence.graph_loss`, which reads them as it reads a hooked call's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from defib.evidence.callsite import make_where, user_frame
from defib.evidence.provenance import loss_line
from defib.signals.common import Where

MARK = "defib.module_output"  # key of the module output's alias in its grad_fn's metadata
MAX_MARKED = 1 << 16          # outputs up to this many elements are marked: predictions, not hidden states
MAX_NODES = 256               # nodes one walk visits: the loss's own arithmetic, never the whole model
MAX_PRED_OPS = 8              # reshapes and slices between a module output and the subtraction
_VIEWS = ("ViewBackward", "UnsafeViewBackward", "ReshapeAlias", "SqueezeBackward", "UnsqueezeBackward",
          "CloneBackward", "ToCopyBackward", "AliasBackward", "ExpandBackward")
_LOG_PROBS = ("LogSoftmaxBackward0", "LogBackward0")


@dataclass
class GraphLoss:
    """A loss term recognised in the graph, as the hooked loss call that computes the same would see it."""

    fn: str                 # the torch.nn.functional loss this arithmetic computes: "mse_loss", "cross_entropy", ...
    family: str             # regression | classification | multilabel
    input: torch.Tensor     # the predictions as they entered the arithmetic (detached)
    target: torch.Tensor    # the targets, in the shape the user gave them (a broadcast's shape is undone)
    value: torch.Tensor     # the term as F.<fn> with mean reduction computes it (auxiliary terms left out)
    producer: Any           # the autograd node that made the predictions
    producer_output: int = 0  # which of the producer's outputs the predictions are


def mark_output(output: torch.Tensor) -> None:
    """A module returned ``output`` (a tensor of at most two dimensions): leave its alias on its grad_fn.

    Runs for every such module call, outside the guard: cheap, and it never raises.
    """
    if torch.compiler.is_compiling():  # reading grad_fn while torch.compile traces would break its graph
        return
    fn = output.grad_fn
    if fn is None or output.numel() > MAX_MARKED:
        return
    try:
        fn.metadata[MARK] = output.detach()
    except Exception:  # an exotic node without metadata: it is just not marked; training must go on
        pass


def mark_outputs_in(output: Any) -> None:
    """Mark the small tensors a model returns in an object (a ModelOutput's ``logits``, a tuple's items)."""
    values = output.values() if isinstance(output, Mapping) else output if isinstance(output, tuple) else ()
    for value in values:
        if type(value) is torch.Tensor and value.ndim <= 2:
            mark_output(value)


def read_loss(loss: torch.Tensor) -> tuple[GraphLoss | ReducedFirst | None, list[str]]:
    """Walk ``loss``'s graph breadth first for the first term that compares predictions with targets.

    Returns the term (None if none was recognised) and the distinct node names the walk saw, which
    say what the loss was made of when nothing was recognised. The walk stops at marked module
    outputs (the model's inside is not the loss's arithmetic) and after ``MAX_NODES`` nodes.
    """
    seen: dict[int, Any] = {}  # holding the nodes keeps their ids unique during the walk
    names: list[str] = []
    queue = deque([loss.grad_fn])
    while queue and len(seen) < MAX_NODES:
        node = queue.popleft()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        name = type(node).__name__
        if name not in names:
            names.append(name)
        found = _recognise(node, name)
        if found is not None:
            return found, names
        if _marked(node) is None:
            queue.extend(f for f, _ in node.next_functions)
    return None, names


@dataclass
class ReducedFirst:
    """``abs((pred - y).mean())`` or ``((pred - y).mean()) ** 2``: the batch's differences are averaged *before*
    the absolute value or the square, so the loss is zero whenever the batch mean is right, whatever each
    prediction is. No per-example target survives in the graph (a subtraction keeps nothing), so this is
    recognised by its shape alone."""

    fn: str         # the loss the user meant: "l1_loss" for abs, "mse_loss" for a square
    producer: Any   # the autograd node that made the predictions


def _recognise(node: Any, name: str) -> GraphLoss | ReducedFirst | None:
    if name in ("PowBackward0", "AbsBackward0", "MulBackward0"):
        return _difference(node, name) or _reduced_first(node, name)
    if name in ("GatherBackward0", "IndexBackward0"):
        return _picked_log_prob(node, name)
    return None


def loss_where(comparison: bool) -> Where | None:
    """The user's line that computes the loss ``backward()`` is being called on (from inside that call).

    No hook sees tensor arithmetic run, so the line is found in the source: the assignment of the
    variable ``backward()`` is called on and, for a comparison (``comparison``), the subtraction in
    it, where a broadcast happens (see :func:`defib.evidence.provenance.loss_line`). The
    ``backward()`` line itself when the source does not show it.
    """
    frame = user_frame(2)
    if frame is None:
        return None
    filename = frame.f_code.co_filename
    return make_where(filename, loss_line(filename, frame.f_lineno, comparison) or frame.f_lineno)


# ---------------------------------------------------------------- regression: a function of pred - target
def _difference(node: Any, name: str) -> GraphLoss | None:
    """``(pred - y) ** 2``, ``(pred - y) * (pred - y)``, ``abs(pred - y)``, and ``y - pred`` alike; else the
    one-sided product of cross-entropy or BCE written by hand (:func:`_weighted_log`)."""
    fns = node.next_functions
    if name == "MulBackward0" and (len(fns) != 2 or fns[0][0] is not fns[1][0]):
        return _weighted_log(node)
    sub = _under_square_or_abs(node, name)
    slot = _prediction_slot(sub)
    if slot is None:
        return None
    diff = getattr(node, "_saved_self", None)
    pred_node, nr = sub.next_functions[slot]
    shape = tuple(pred_node._input_metadata[nr].shape)
    pred = _values(pred_node, shape)
    if diff is None or pred is None:
        return None
    pred = pred.to(diff.dtype)
    full = pred - diff if slot == 0 else diff + pred
    target = _snap_integers(_unbroadcast(full, shape))
    squared = name != "AbsBackward0"
    value = diff.pow(2).mean() if squared else diff.abs().mean()
    return GraphLoss(fn="mse_loss" if squared else "l1_loss", family="regression", input=pred, target=target,
                     value=value, producer=pred_node, producer_output=nr)


def _reduced_first(node: Any, name: str) -> ReducedFirst | None:
    """An absolute value or a square of a full mean or sum of ``pred - y`` (see :class:`ReducedFirst`)."""
    mean = _under_square_or_abs(node, name)
    if type(mean).__name__ not in ("MeanBackward0", "SumBackward0"):
        return None  # a full reduction: MeanBackward1 / SumBackward1 reduce over chosen dims only
    sub = mean.next_functions[0][0]
    slot = _prediction_slot(sub)
    if slot is None:
        return None
    return ReducedFirst(fn="l1_loss" if name == "AbsBackward0" else "mse_loss", producer=sub.next_functions[slot][0])


def _under_square_or_abs(node: Any, name: str) -> Any:
    """The node a square (``x ** 2``, ``x * x``) or an absolute value is taken of; None for any other node."""
    fns = node.next_functions
    if name == "MulBackward0" and (len(fns) != 2 or fns[0][0] is not fns[1][0]):
        return None
    if name == "PowBackward0" and getattr(node, "_saved_exponent", None) != 2:
        return None
    return fns[0][0] if fns else None


def _prediction_slot(sub: Any) -> int | None:
    """The input of ``pred - y`` (a plain subtraction) that carries gradients, the predictions; None when ``sub``
    is no such subtraction or both sides carry gradients (not predictions against data)."""
    if type(sub).__name__ != "SubBackward0" or getattr(sub, "_saved_alpha", 1) != 1:
        return None
    slots = [i for i, (f, _) in enumerate(sub.next_functions) if f is not None]
    return slots[0] if len(slots) == 1 else None


def _values(node: Any, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The values of ``node``'s output (of ``shape``): a marked module output or a saved result, replayed
    through the reshapes and slices in between. None when another op stands between them."""
    ops = []
    for _ in range(MAX_PRED_OPS):
        if node is None:
            return None
        base = _marked(node)
        if base is None:
            base = getattr(node, "_saved_result", None) if type(node).__name__ in _SAVES_RESULT else None
        if base is not None:
            for op in reversed(ops):
                base = _replay(op, base)
                if base is None:
                    return None
            return base.reshape(shape) if base.numel() == _numel(shape) else None
        name = type(node).__name__
        if not name.startswith(_VIEWS + ("SelectBackward", "SliceBackward")):
            return None
        ops.append(node)
        node = node.next_functions[0][0]
    return None


_SAVES_RESULT = ("SigmoidBackward0", "TanhBackward0", "ExpBackward0", "SoftplusBackward0")


def _replay(op: Any, x: torch.Tensor) -> torch.Tensor | None:
    """Apply the slice or view that ``op`` (an autograd node) stands for to ``x``."""
    name = type(op).__name__
    out = tuple(op._input_metadata[0].shape)
    if name.startswith(("SelectBackward", "SliceBackward")):
        sizes = tuple(getattr(op, "_saved_self_sym_sizes", ()))
        if _numel(sizes) != x.numel():
            return None
        x = x.reshape(sizes)
        dim = _dim(op._saved_dim, len(sizes))
        if name.startswith("SelectBackward"):
            return x.select(dim, int(op._saved_index))
        return x[(slice(None),) * dim + (slice(op._saved_start, op._saved_end, op._saved_step),)]
    if name.startswith("ExpandBackward"):
        return x.expand(out) if x.dim() <= len(out) else None
    return x.reshape(out) if x.numel() == _numel(out) else None


def _unbroadcast(full: torch.Tensor, pred_shape: tuple[int, ...]) -> torch.Tensor:
    """The targets in their own shape, from ``full`` = the targets broadcast against predictions of ``pred_shape``.

    Along a dimension where the predictions vary the targets were broadcast (size 1); along one
    where the predictions have size 1, the targets vary: ``[B, 1]`` predictions against a
    ``[B, B]`` difference had ``[B]`` targets, ``[B]`` predictions against ``[B, B]`` had ``[B, 1]``.
    """
    shape = tuple(full.shape)
    if shape == pred_shape:
        return full
    aligned = (1,) * (len(shape) - len(pred_shape)) + pred_shape
    t = full[tuple(slice(0, 1) if aligned[d] == shape[d] and shape[d] > 1 else slice(None) for d in range(len(shape)))]
    while t.dim() > 1 and t.shape[0] == 1:
        t = t[0]
    return t


def _snap_integers(y: torch.Tensor) -> torch.Tensor:
    """pred - (pred - y) is y up to rounding: put whole-number targets back on the whole numbers (on the device)."""
    r = y.round()
    return torch.where((y - r).abs() <= 1e-5 * r.abs().clamp(min=1.0), r, y)


# ---------------------------------------------------------------- classification: log-probabilities picked by class id
def _picked_log_prob(node: Any, name: str) -> GraphLoss | None:
    """``log_softmax(x).gather(1, y[:, None])`` or ``log_softmax(x)[torch.arange(B), y]``: cross-entropy by hand."""
    logp = _log_probs(node.next_functions[0][0])
    if logp is None or logp.dim() != 2:
        return None
    if name == "GatherBackward0":
        index = node._saved_index
        if _dim(node._saved_dim, 2) != 1 or index.dim() != 2 or index.shape[1] != 1:
            return None
        target = index[:, 0]
    else:
        indices = list(getattr(node, "_saved_indices", ()))
        if len(indices) != 2 or not all(torch.is_tensor(i) and i.dim() == 1 for i in indices):
            return None
        target = indices[1]
        if target.dtype in (torch.bool, torch.uint8):
            return None
    value = -logp.gather(1, target.long()[:, None]).mean()
    return GraphLoss(fn="cross_entropy", family="classification", input=logp, target=target, value=value,
                     producer=node.next_functions[0][0])


def _log_probs(node: Any) -> torch.Tensor | None:
    """Log-probabilities from ``log_softmax(x)`` or ``log(softmax(x))``, as the node saved them."""
    name = type(node).__name__
    if name == "LogSoftmaxBackward0":
        return getattr(node, "_saved_result", None)
    if name == "LogBackward0" and type(node.next_functions[0][0]).__name__ == "SoftmaxBackward0":
        probs = getattr(node, "_saved_self", None)
        return probs.log() if probs is not None else None
    return None


def _weighted_log(node: Any) -> GraphLoss | None:
    """``(onehot * log_softmax(x)).sum(-1)``: soft-target cross-entropy; ``y * log(sigmoid(x))`` or
    ``y * logsigmoid(x)``: binary cross-entropy. The targets are the saved side without a gradient."""
    fns = node.next_functions
    slots = [i for i, (f, _) in enumerate(fns) if f is not None]
    if len(fns) != 2 or len(slots) != 1:
        return None
    target = getattr(node, "_saved_self" if slots[0] == 1 else "_saved_other", None)
    side = fns[slots[0]][0]
    if target is None or not target.is_floating_point():
        return None
    logp = _log_probs(side)
    if logp is not None and logp.dim() == 2 and target.shape == logp.shape:
        return GraphLoss(fn="cross_entropy", family="classification", input=logp, target=target,
                         value=-(target * logp).sum(-1).mean(), producer=side)
    inner = side.next_functions[0][0] if side.next_functions else None
    inner_name = type(inner).__name__
    if type(side).__name__ == "LogBackward0" and inner_name == "SigmoidBackward0":
        p = inner._saved_result
        if p.shape != target.shape:
            return None
        value = -(target * p.log().clamp(min=-100) + (1 - target) * (1 - p).log().clamp(min=-100)).mean()  # as torch
        return GraphLoss(fn="binary_cross_entropy", family="multilabel", input=p, target=target, value=value,
                         producer=inner)
    if type(side).__name__ == "LogSigmoidBackward0" and inner_name != "NegBackward0":
        x = side._saved_self  # the logits; logsigmoid(-x) is the other half of the formula
        if x.shape != target.shape:
            return None
        value = (x.clamp(min=0) - x * target + torch.log1p(torch.exp(-x.abs()))).mean()
        return GraphLoss(fn="binary_cross_entropy_with_logits", family="multilabel", input=x, target=target,
                         value=value, producer=inner)
    return None


# ---------------------------------------------------------------- helpers
def _marked(node: Any) -> torch.Tensor | None:
    try:
        return node.metadata.get(MARK)
    except Exception:  # a node type without metadata
        return None


def _dim(dim: int, ndim: int) -> int:
    """A saved dimension: autograd keeps -1 as an unsigned 64-bit integer."""
    dim = int(dim)
    if dim >= 1 << 63:
        dim -= 1 << 64
    return dim % ndim if ndim else 0


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
