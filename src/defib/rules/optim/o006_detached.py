"""O006: the graph is broken between the loss and parameters that should learn."""

from __future__ import annotations

from defib.evidence.params import group_of
from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class DetachedGraph(Rule):
    """Trainable parameters in the optimizer never receive a gradient.

    What it detects:
        Parameters with ``requires_grad=True``, held by the optimizer, whose
        ``.grad`` stays None through every sampled step, when they include the
        bottom of the encoder (the embeddings: the gradient never reaches the
        encoder) or the whole head. An unused pooler or top layer is normal
        and stays silent. defib also notes where the head received an input without
        a gradient path, or the encoder ran under ``no_grad`` during training.

    Why it flattens predictions:
        ``.detach()``, ``torch.no_grad()``, ``.data``, ``.item()`` or a NumPy
        round trip in the forward pass or the loss (``loss = torch.tensor(np_value,
        requires_grad=True)`` is a new leaf: its backward reaches nothing) cut the encoder off from the loss: only
        the head learns, on frozen random-ish features, or nothing learns at
        all. Predictions stay near their initial, nearly constant values.

    Example:
        ``with torch.no_grad(): h = bert(**batch).last_hidden_state``
        followed by ``loss = mse(head(h[:, 0]), y)``.

    Fix:
        Remove the ``detach``/``no_grad``/``.data``/NumPy step from the
        training forward pass (keep ``no_grad`` for evaluation only).
    """

    code = "O006"
    cause = "optim.detached"
    title = "Graph broken between the loss and the parameters"
    severity = Severity.ERROR
    needs = ("optim",)

    min_step = 2

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        if s.step < self.min_step or not o.never_grad:
            return None
        groups = sorted({group_of(n) for n in o.never_grad})
        # An unused pooler or top layer (pooling from hidden_states[-2]) legitimately gets no gradient.
        # The graph is cut only if it never reaches the bottom of the encoder (the embeddings) or the head.
        encoder_cut = "embeddings" in groups and "embeddings" not in o.groups_with_grad
        head_cut = "head" in groups and "head" not in o.groups_with_grad
        if not (encoder_cut or head_cut):
            return None
        m = s.model
        # a loss with no graph at all (backward() on a leaf) is the cut itself; then the forward's cut points
        where = o.leaf_loss_where
        if where is None and m is not None:
            where = m.nograd_forward_where or (m.head_input_where if m.head_input_detached else None)
        if where is None and s.loss is not None:
            where = s.loss.where
        share_note = "no parameter at all" if not o.groups_with_grad else f"only {', '.join(o.groups_with_grad)}"
        leaf_note = (" backward() was called on a tensor with no graph (no grad_fn): the loss was rebuilt "
                     "outside autograd, e.g. torch.tensor(...) of a number or a NumPy value."
                     if o.leaf_loss_where is not None else "")
        return self.finding(
            f"{len(o.never_grad)} trainable parameter tensors in the optimizer never received a gradient "
            f"(groups: {', '.join(groups)}); {share_note} did. The graph from the loss does not reach them."
            + leaf_note,
            confidence=0.9,
            evidence={"never_grad": o.never_grad[:20], "count": len(o.never_grad), "groups_without_grad": groups,
                      "groups_with_grad": o.groups_with_grad, "loss_without_graph": o.leaf_loss_where is not None},
            where=where,
            fix="Remove .detach() / torch.no_grad() / .data / .numpy() from the training forward pass")
