"""Fix for optim.lr_too_low: every group's lr scaled up to a healthy update size, or LoRA's scale when it is the cause."""

from __future__ import annotations

from defib.evidence.adapters import lora_factors
from defib.fixes.base import fix_for
from defib.fixes.optim.common import HEALTHY_UPDATE_RATIO, SetLr, one_digit

MAX_LORA_SCALE = 4.0  # lora_alpha = 4r, the top of what people use: a scale past it is no longer LoRA as configured


@fix_for
class RaiseLr(SetLr):
    """Scale every group's lr up to where the measured update size becomes a healthy one.

    When the finding blames a tiny LoRA scale (``lever`` ``lora_alpha``), the lr
    stays and every adapted layer's scale is raised instead: a larger lr would
    also move the A factors and the head by as much, and the layers' change is
    linear in the scale.
    """

    cause = "optim.lr_too_low"
    ratio_key = "update_ratio_median"

    @classmethod
    def plan(cls, evidence, finding):
        scale, ratio = evidence.get("lora_scale"), evidence.get(cls.ratio_key)
        if evidence.get("lever") == "lora_alpha" and isinstance(scale, (int, float)) and scale > 0 \
                and isinstance(ratio, (int, float)) and ratio > 0:
            return {"lora_scale": min(one_digit(scale * HEALTHY_UPDATE_RATIO / ratio), MAX_LORA_SCALE),
                    "from_lora_scale": scale}
        return super().plan(evidence, finding)

    @classmethod
    def describe(cls, params):
        if "lora_scale" in params:
            return (f"LoRA scale {params['lora_scale']:g} where it was {params['from_lora_scale']:.2g} "
                    f"(lora_alpha = {params['lora_scale']:g} x r)")
        return super().describe(params)

    def optimizer_created(self, optimizer):
        if "lora_scale" not in self.params:
            super().optimizer_created(optimizer)

    def before_step(self, optimizer, watcher):
        if "lora_scale" in self.params and self.first_time():
            for root in watcher.roots():
                for f in lora_factors(root):
                    f.layer.scaling[f.adapter] = self.params["lora_scale"]
