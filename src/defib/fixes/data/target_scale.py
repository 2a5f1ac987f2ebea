"""Fix for data.target_scale: regression targets standardised at the loss call."""

from __future__ import annotations

import torch

from defib.fixes.base import Fix, fix_for
from defib.signals.run import REGRESSION_LOSSES


@fix_for
class StandardiseTargets(Fix):
    """Train on standardised targets, (y - mean) / std, and map predictions back."""

    cause = "data.target_scale"

    @classmethod
    def plan(cls, evidence, finding):
        mean, std = evidence.get("target_mean"), evidence.get("target_std")
        return {"mean": mean, "std": std} if mean is not None and std else None

    @classmethod
    def describe(cls, params):
        return f"y = (y - {params['mean']:.4g}) / {params['std']:.4g}; predict y * std + mean"

    def loss_args(self, fn, input, target, named):
        if fn in REGRESSION_LOSSES and isinstance(target, torch.Tensor) and target.is_floating_point():
            target = (target - self.params["mean"]) / self.params["std"]
        return input, target, named
