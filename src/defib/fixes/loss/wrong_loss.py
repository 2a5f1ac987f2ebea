"""Fix for loss.wrong_loss: log_softmax before nll_loss (the one wrong loss fixable from outside)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from defib.fixes.base import Fix, fix_for


@fix_for
class LogSoftmaxForNll(Fix):
    """Feed nll_loss log-probabilities: log_softmax on the logits first."""

    cause = "loss.wrong_loss"

    @classmethod
    def plan(cls, evidence, finding):
        return {} if evidence.get("loss") == "nll_loss" else None  # the other wrong-loss shapes need a rewrite

    def loss_args(self, fn, input, target, named):
        if fn == "nll_loss" and isinstance(input, torch.Tensor) and input.ndim >= 2:
            input = F.log_softmax(input, dim=1)
        return input, target, named
