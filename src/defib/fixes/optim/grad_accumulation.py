"""Fix for optim.grad_accumulation: accumulated gradients divided by the micro-batch count, cleared after each step."""

from __future__ import annotations

from defib.fixes.base import fix_for, scale_grads
from defib.fixes.optim.zero_grad import ZeroGradEachStep


@fix_for
class AccumulateRight(ZeroGradEachStep):
    """Clear gradients after each step and divide accumulated gradients by the micro-batch count."""

    cause = "optim.grad_accumulation"

    @classmethod
    def plan(cls, evidence, finding):
        k = evidence.get("micro_batches")
        return {"grad_scale": 1.0 / k} if k else {}

    @classmethod
    def describe(cls, params):
        return f"(loss / {round(1 / params['grad_scale'])}).backward()" if params.get("grad_scale") else \
            "optimizer.zero_grad() after every optimizer.step()"

    def skip_zero_grad(self) -> bool:
        return not self.params.get("grad_scale")

    def before_step(self, optimizer, watcher):
        scale_grads(optimizer, self.params.get("grad_scale"))

    def after_step(self, optimizer):
        if not self.params.get("grad_scale"):
            super().after_step(optimizer)
