"""Fix for data.label_encoding: 1-based class ids shifted to 0-based at the loss call."""

from __future__ import annotations

import torch

from defib.fixes.base import Fix, fix_for
from defib.signals.run import CLASS_LOSSES


@fix_for
class ZeroBasedLabels(Fix):
    """Shift 1-based class ids to 0-based: labels - 1."""

    cause = "data.label_encoding"

    @classmethod
    def plan(cls, evidence, finding):
        lo, hi, k = evidence.get("label_min"), evidence.get("label_max"), evidence.get("num_logits")
        return {"shift": int(lo)} if lo is not None and k and lo >= 1 and hi == k else None

    @classmethod
    def describe(cls, params):
        return f"labels = labels - {params['shift']}"

    def loss_args(self, fn, input, target, named):
        if fn in CLASS_LOSSES and isinstance(target, torch.Tensor) and not target.is_floating_point():
            target = target - self.params["shift"]
        return input, target, named
