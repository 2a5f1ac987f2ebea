"""O104 (probe): the optimizer's learning rate lies far below where the LR sweep starts to learn."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num, rnd
from defib.signals.run import Signals


@register
class LRBelowSweep(Rule):
    """The learning rate you chose is orders of magnitude below the one an LR range test suggests.

    What it detects:
        ``defib probe`` sweeps the learning rate of your optimizer and
        suggests a tenth of the lr at the lowest loss. Reported when your lr
        is below ``min_factor`` of that suggestion (an lr of 0 included).

    Why it flattens predictions:
        A freshly initialised head that barely moves keeps its small random
        weights: outputs stay near-constant and the loss near its start.

    Example:
        ``AdamW(model.parameters(), lr=2e-8)`` (a typo for 2e-5), or ``lr=0``.

    Fix:
        Use the suggested lr, or the usual 2e-5 to 5e-5 for BERT fine-tuning.
    """

    code = "O104"
    cause = "optim.lr_too_low"
    title = "Learning rate far below what the model needs"
    severity = Severity.WARNING
    stage = "probe"
    needs = ("probe", "probe.lr_range", "probe.user_lr", "probe.lr_range.suggested_lr")

    min_factor = 0.01   # lr / suggested lr below this: two orders of magnitude too small

    def check(self, s: Signals) -> Finding | None:
        r, lr = s.probe.lr_range, s.probe.user_lr
        if lr >= self.min_factor * r.suggested_lr:
            return None
        return self.finding(
            f"Your learning rate is {'0' if lr == 0 else f'{num(lr)}, {num(r.suggested_lr / lr, 2)}x below'} "
            f"the {num(r.suggested_lr)} that the LR sweep on your model and optimizer suggests.",
            confidence=0.8,
            evidence={"user_lr": lr, "suggested_lr": rnd(r.suggested_lr), "min_loss_lr": rnd(r.min_loss_lr),
                      "optimizer": r.optimizer},
            fix=f"lr={num(r.suggested_lr, 2)}  # from defib probe's LR sweep")
