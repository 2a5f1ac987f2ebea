"""Fix for model.output_range: the model's capping activation skipped, or the targets put in the loss's own range.

Two different bounds hide under one cause. A head that ends in a sigmoid or a
tanh caps its own output: dropping that activation lets the output reach the
targets. A cosine similarity (sentence-transformers' ``CosineSimilarityLoss``,
an ``F.cosine_similarity`` regressed with MSE) or the sigmoid inside
BCE-with-logits is the loss's own bound: there is no activation to drop, and
what the user must change is the targets' scale (``score / 5``). The rule
records whose bound it is (``bound_of``); the fix follows it.
"""

from __future__ import annotations

import torch

from defib.fixes.base import DropLineActivation, fix_for


@fix_for
class FitOutputRange(DropLineActivation):
    """Remove the activation that keeps the output from reaching the targets' range."""

    cause = "model.output_range"

    @classmethod
    def plan(cls, evidence, finding):
        if evidence.get("bound_of") != "loss":
            return super().plan(evidence, finding)
        lo, hi = (evidence.get("range") or [None, None])[:2]
        t_lo, t_hi = (evidence.get("target_range") or [None, None])[:2]
        if not evidence.get("loss_fn") or None in (lo, hi, t_lo, t_hi) or not t_hi > t_lo or not hi > lo:
            return None
        # targets that are all >= 0 (similarity scores) go to the bound's non-negative part: a score of 0
        # means unrelated, which a cosine says with 0, not -1 (the rule's own advice: labels / max)
        low = max(lo, 0.0) if t_lo >= 0 else lo
        return {"loss_fn": evidence["loss_fn"], "from": [t_lo, t_hi], "to": [low, hi], "what": evidence.get("activation")}

    @classmethod
    def describe(cls, params):
        if "loss_fn" not in params:
            return super().describe(params)
        (a, b), (c, d) = params["from"], params["to"]
        return (f"targets mapped from {a:g}..{b:g} onto {c:g}..{d:g}, the range of the "
                f"{params.get('what') or 'loss input'}, where {params['loss_fn']} receives them")

    def skip_activation(self, filename, line):
        return "loss_fn" not in self.params and super().skip_activation(filename, line)

    def loss_args(self, fn, input, target, named):
        """Map the float targets of the named loss linearly onto the reachable range (clamped to it)."""
        if fn != self.params.get("loss_fn") or not isinstance(target, torch.Tensor) \
                or not target.is_floating_point():
            return input, target, named
        (a, b), (c, d) = self.params["from"], self.params["to"]
        return input, (c + (target - a) * ((d - c) / (b - a))).clamp(c, d), named
