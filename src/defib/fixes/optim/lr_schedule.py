"""Fix for optim.lr_schedule: the configured learning rate held, the scheduler's steps skipped."""

from __future__ import annotations

from defib.fixes.base import Fix, fix_for


@fix_for
class ConstantLr(Fix):
    """Hold the configured learning rate: the scheduler's steps are skipped."""

    cause = "optim.lr_schedule"

    def scheduler_created(self, scheduler):
        for g in scheduler.optimizer.param_groups:
            if "initial_lr" in g:
                g["lr"] = g["initial_lr"]

    def skip_scheduler_step(self) -> bool:
        return True
