"""Fix for optim.zero_grad: gradients cleared right after each step and nowhere else."""

from __future__ import annotations

from defib.fixes.base import Fix, fix_for


@fix_for
class ZeroGradEachStep(Fix):
    """optimizer.zero_grad() right after optimizer.step(), and nowhere else."""

    cause = "optim.zero_grad"

    def skip_zero_grad(self) -> bool:
        return True

    def after_step(self, optimizer):
        for g in optimizer.param_groups:
            for p in g["params"]:
                p.grad = None
