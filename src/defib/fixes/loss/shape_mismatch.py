"""Fix for loss.shape_mismatch: predictions reshaped to the target's shape, so the loss does not broadcast."""

from __future__ import annotations

import torch

from defib.fixes.base import Fix, fix_for
from defib.signals.run import CLASS_LOSSES


@fix_for
class ReshapeAtLoss(Fix):
    """loss_fn(pred.reshape(target.shape), target): the [B, 1] head output reshaped to [B]."""

    cause = "loss.shape_mismatch"

    def loss_args(self, fn, input, target, named):
        if isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor) and fn not in CLASS_LOSSES \
                and input.shape != target.shape and input.numel() == target.numel():
            input = input.reshape(target.shape)
        return input, target, named
