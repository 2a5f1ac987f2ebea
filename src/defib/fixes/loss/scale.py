"""Fix for loss.scale: mean reduction, or gradients scaled back by the measured factor."""

from __future__ import annotations

from defib.fixes.base import Fix, fix_for, scale_grads


@fix_for
class LossScale(Fix):
    """Undo the loss scaling: mean reduction, or gradients divided by the measured factor."""

    cause = "loss.scale"

    @classmethod
    def plan(cls, evidence, finding):
        factor = evidence.get("scale_vs_mean")
        if evidence.get("reduction") == "sum":
            return {"reduction": "mean"}
        if isinstance(factor, (int, float)) and factor > 0:
            return {"grad_scale": 1.0 / factor}
        return None

    @classmethod
    def describe(cls, params):
        return "reduction='mean'" if params.get("reduction") else f"gradients x {params['grad_scale']:.3g}"

    def loss_args(self, fn, input, target, named):
        if self.params.get("reduction") and named.get("reduction") == "sum":
            named = dict(named, reduction="mean")
        return input, target, named

    def before_step(self, optimizer, watcher):
        scale_grads(optimizer, self.params.get("grad_scale"))
