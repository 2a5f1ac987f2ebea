"""L001: prediction and target shapes differ at a regression loss, so the loss broadcasts."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class ShapeMismatch(Rule):
    """The loss compares a [B, 1] prediction with a [B] target (or the reverse).

    What it detects:
        An element-wise loss (MSE, L1, Huber, BCE) receives input and target of
        different shapes that broadcast, for example ``(16, 1)`` against
        ``(16,)``. Seen at the loss call itself, on the first step; for a loss
        written with tensor ops (``((pred - y) ** 2).mean()``), in its
        autograd graph at ``backward()``, pointing at the subtraction.

    Why it flattens predictions:
        Broadcasting turns the B predictions and B targets into a B x B grid:
        every prediction is compared with every target. The loss is then
        minimised by predicting the batch mean of the targets for every input,
        which is exactly the flatline. PyTorch only warns ("Using a target size
        that is different to the input size").

    Example:
        ``pred = model(**batch)  # (16, 1)``
        ``loss = F.mse_loss(pred, batch["labels"])  # labels: (16,)``

    Fix:
        Make the shapes equal before the loss: ``pred.squeeze(-1)`` (or
        ``target.unsqueeze(-1)``), or build the head with the target's shape.
    """

    code = "L001"
    cause = "loss.shape_mismatch"
    title = "Prediction and target shapes differ, so the loss broadcasts"
    severity = Severity.ERROR
    needs = ("loss",)

    min_share = 0.5  # share of loss calls that must broadcast (one odd last batch is not the pattern)

    def check(self, s: Signals) -> Finding | None:
        ls = s.loss
        if ls.family == "classification" or ls.calls == 0 or ls.broadcast_calls / ls.calls < self.min_share:
            return None
        squeeze = len(ls.input_shape) > len(ls.target_shape)
        if ls.source == "graph":  # a loss written with tensor ops: the subtraction is the line to change
            name = f"The hand-written loss (computed like {ls.fn})"
            fix = "pred.squeeze(-1) - target" if squeeze else "pred - target.view_as(pred)"
        else:
            name = ls.fn
            fix = ("loss = loss_fn(pred.squeeze(-1), target)" if squeeze
                   else "loss = loss_fn(pred, target.view_as(pred))")
        return self.finding(
            f"{name} received predictions of shape {list(ls.input_shape)} and targets of shape "
            f"{list(ls.target_shape)} in {ls.broadcast_calls} of {ls.calls} calls; they broadcast to a "
            f"{_grid(ls.input_shape, ls.target_shape)} grid, so every prediction is pulled to the batch mean.",
            confidence=0.97,
            evidence={"input_shape": list(ls.input_shape), "target_shape": list(ls.target_shape),
                      "broadcast_calls": ls.broadcast_calls, "calls": ls.calls},
            where=ls.where, fix=fix)


def _grid(a: tuple[int, ...], b: tuple[int, ...]) -> str:
    try:
        import torch

        return "x".join(str(d) for d in torch.broadcast_shapes(a, b))
    except Exception:
        return "larger"
