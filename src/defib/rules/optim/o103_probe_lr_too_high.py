"""O103 (probe): the optimizer's learning rate lies where the LR sweep already diverges."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num, rnd
from defib.signals.run import Signals


@register
class LRAboveSweep(Rule):
    """The learning rate you chose is past the lowest point of an LR range test on your own model and optimizer.

    What it detects:
        ``defib probe`` sweeps the learning rate of your optimizer
        exponentially (restoring the weights afterwards) and finds the lr at
        which the loss is lowest and the one at which it runs away. Reported
        when your lr is at least the runaway lr, or ``max_factor`` times the
        lowest-loss lr.

    Why it flattens predictions:
        Steps that large throw the encoder out of its pretrained state:
        representations of different inputs become alike and the model falls
        back to the constant prediction.

    Example:
        ``AdamW(model.parameters(), lr=1e-2)`` for a BERT whose sweep
        bottoms out near 1e-3 and runs away at 3e-3.

    Fix:
        Use the suggested lr (a tenth of the lowest-loss lr) or the usual
        2e-5 to 5e-5 for BERT fine-tuning, with warmup.
    """

    code = "O103"
    cause = "optim.lr_too_high"
    title = "Learning rate above the range the model tolerates"
    severity = Severity.ERROR
    stage = "probe"
    needs = ("probe", "probe.lr_range", "probe.user_lr", "probe.lr_range.min_loss_lr")

    max_factor = 10.0   # lr / lowest-loss lr at or above this: past the valley, where the loss climbs

    def check(self, s: Signals) -> Finding | None:
        r, lr = s.probe.lr_range, s.probe.user_lr
        runaway = r.diverged_lr is not None and lr >= r.diverged_lr
        if not runaway and lr < self.max_factor * r.min_loss_lr:
            return None
        where = f"the loss ran away at {num(r.diverged_lr)}" if r.diverged_lr else "the loss climbs after it"
        return self.finding(
            f"Your learning rate {num(lr)} is {num(lr / r.min_loss_lr, 2)}x the lr at which the sweep's loss was "
            f"lowest ({num(r.min_loss_lr)}); {where}. Suggested: {num(r.suggested_lr)}.",
            confidence=0.85 if runaway else 0.6,
            evidence={"user_lr": lr, "min_loss_lr": rnd(r.min_loss_lr), "diverged_lr": rnd(r.diverged_lr),
                      "suggested_lr": rnd(r.suggested_lr), "optimizer": r.optimizer},
            fix=f"lr={num(r.suggested_lr, 2)}  # from defib probe's LR sweep; or 2e-5..5e-5 with warmup")
