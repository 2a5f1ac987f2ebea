"""Fix for loss.class_imbalance: cross-entropy weighted by inverse class frequency; BCE given ``pos_weight``."""

from __future__ import annotations

import torch

from defib.fixes.base import Fix, fix_for


@fix_for
class ClassWeights(Fix):
    """Weight cross-entropy by inverse class frequency (n / (K * n_c)); multi-label BCE by negatives / positives."""

    cause = "loss.class_imbalance"
    rescales_loss = True

    @classmethod
    def plan(cls, evidence, finding):
        rates = evidence.get("label_pos_rate")
        if rates:  # multi-label: each label's negatives over its positives, as BCEWithLogitsLoss documents
            return {"pos_weight": [(1 - q) / q if q > 0 else 1.0 for q in rates]}
        counts = {int(k): int(v) for k, v in (evidence.get("label_counts") or {}).items()}
        if len(counts) < 2:
            return None
        total, k = sum(counts.values()), max(counts) + 1
        return {"weights": [total / (len(counts) * counts[c]) if counts.get(c) else 1.0 for c in range(k)]}

    @classmethod
    def describe(cls, params):
        if "pos_weight" in params:
            shown = ", ".join(f"{w:.2f}" for w in params["pos_weight"])
            return f"binary_cross_entropy_with_logits(..., pos_weight=torch.tensor([{shown}]))"
        shown = ", ".join(f"{w:.2f}" for w in params["weights"])
        return f"cross_entropy(..., weight=torch.tensor([{shown}]))"

    def loss_args(self, fn, input, target, named):
        if not isinstance(input, torch.Tensor):
            return input, target, named
        if "pos_weight" in self.params:
            if fn == "binary_cross_entropy_with_logits" and named.get("pos_weight") is None \
                    and input.shape[-1] == len(self.params["pos_weight"]):
                named = dict(named, pos_weight=torch.tensor(self.params["pos_weight"], dtype=input.dtype,
                                                            device=input.device))
            return input, target, named
        if fn in ("cross_entropy", "nll_loss") and named.get("weight") is None \
                and input.ndim == 2 and input.shape[1] == len(self.params["weights"]):
            named = dict(named, weight=torch.tensor(self.params["weights"], dtype=input.dtype, device=input.device))
        return input, target, named
