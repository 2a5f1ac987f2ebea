"""Fix for data.target_scale: regression targets standardised at the loss call (or the head's output put on
the targets' scale, for a loss written by hand)."""

from __future__ import annotations

import torch

from defib.fixes.base import Fix, fix_for
from defib.signals.run import REGRESSION_LOSSES


@fix_for
class StandardiseTargets(Fix):
    """Train on standardised targets, (y - mean) / std, and map predictions back.

    A hand-written loss (``((pred - y) ** 2).mean()``, a Huber of the script's own) takes its targets from
    the script, out of defib's reach. There the same fix is made from the other side: the model's one output
    per row becomes ``out * std + mean``, so it starts at the targets' mean and moves in their units, which
    is what training on standardised targets does (the loss then counts in target units; a Huber's delta
    is not rescaled with it).
    """

    cause = "data.target_scale"

    @classmethod
    def plan(cls, evidence, finding):
        mean, std = evidence.get("target_mean"), evidence.get("target_std")
        return {"mean": mean, "std": std} if mean is not None and std else None

    @classmethod
    def describe(cls, params):
        return (f"y = (y - {params['mean']:.4g}) / {params['std']:.4g}; predict y * std + mean "
                f"(a hand-written loss: the model's output * {params['std']:.4g} + {params['mean']:.4g})")

    def loss_args(self, fn, input, target, named):
        if fn in REGRESSION_LOSSES and isinstance(target, torch.Tensor) and target.is_floating_point():
            target = (target - self.params["mean"]) / self.params["std"]
        return input, target, named

    def model_output(self, module, output, graph_loss):
        one_per_row = isinstance(output, torch.Tensor) and output.is_floating_point() and (
            output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1))
        if graph_loss and one_per_row:
            return output * self.params["std"] + self.params["mean"]
        return None
