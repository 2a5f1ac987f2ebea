"""Fix for loss.class_imbalance: cross-entropy weighted by inverse class frequency."""

from __future__ import annotations

import torch

from defib.fixes.base import Fix, fix_for


@fix_for
class ClassWeights(Fix):
    """Weight cross-entropy by inverse class frequency (n / (K * n_c))."""

    cause = "loss.class_imbalance"
    rescales_loss = True

    @classmethod
    def plan(cls, evidence, finding):
        counts = {int(k): int(v) for k, v in (evidence.get("label_counts") or {}).items()}
        if len(counts) < 2:
            return None
        total, k = sum(counts.values()), max(counts) + 1
        return {"weights": [total / (len(counts) * counts[c]) if counts.get(c) else 1.0 for c in range(k)]}

    @classmethod
    def describe(cls, params):
        shown = ", ".join(f"{w:.2f}" for w in params["weights"])
        return f"cross_entropy(..., weight=torch.tensor([{shown}]))"

    def loss_args(self, fn, input, target, named):
        if fn in ("cross_entropy", "nll_loss") and named.get("weight") is None and isinstance(input, torch.Tensor) \
                and input.ndim == 2 and input.shape[1] == len(self.params["weights"]):
            named = dict(named, weight=torch.tensor(self.params["weights"], dtype=input.dtype, device=input.device))
        return input, target, named
