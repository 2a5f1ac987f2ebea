"""Fix for loss.shape_mismatch: predictions reshaped to the target's shape, so the loss does not broadcast."""

from __future__ import annotations

import torch

from defib.fixes.base import Fix, fix_for
from defib.signals.run import CLASS_LOSSES


@fix_for
class ReshapeAtLoss(Fix):
    """loss_fn(pred.reshape(target.shape), target): the [B, 1] head output reshaped to [B].

    A hand-written loss (``(pred - y).abs().mean()``) is out of defib's reach: there the model's output is
    given the shape its targets have, when the two differ by a trailing dimension of 1 (the finding's
    shapes), which is the last point before the arithmetic broadcasts them.
    """

    cause = "loss.shape_mismatch"

    @classmethod
    def plan(cls, evidence, finding):
        return {"input_shape": evidence.get("input_shape"), "target_shape": evidence.get("target_shape")}

    def loss_args(self, fn, input, target, named):
        if isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor) and fn not in CLASS_LOSSES \
                and input.shape != target.shape and input.numel() == target.numel():
            input = input.reshape(target.shape)
        return input, target, named

    def model_output(self, module, output, graph_loss):
        pred, target = self.params.get("input_shape"), self.params.get("target_shape")
        if not graph_loss or not isinstance(output, torch.Tensor) or not pred or not target \
                or output.ndim != len(pred) or tuple(output.shape[1:]) != tuple(pred[1:]):
            return None
        if list(target) == list(pred) + [1]:
            return output.unsqueeze(-1)
        if list(pred) == list(target) + [1]:
            return output.squeeze(-1)
        return None
