"""S102 (probe): the model cannot memorise one small batch."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num, rnd
from defib.signals.run import Signals


@register
class CannotOverfitBatch(Rule):
    """Trained on one batch of a few rows, the loss does not reach a tenth of the constant predictor's.

    What it detects:
        ``defib probe`` trains on one batch (8 rows by default) with your
        optimizer, or AdamW at the LR sweep's suggestion, for a bounded
        number of steps. Any healthy model, loss and optimizer memorise a
        handful of rows; reported when the loss stays above the goal.

    Why it flattens predictions:
        A model that cannot fit 8 rows cannot fit 8,000: something between
        the loss and the weights is broken (frozen or detached weights, an lr
        of zero, a loss that does not fit the task), and training can at best
        learn the constant.

    Example:
        ``AdamW(model.parameters(), lr=0)``; a head whose input is detached
        from a frozen encoder; an output squashed into the wrong range.

    Fix:
        A symptom: see the root cause ranked above it. With none named, check
        that ``loss.backward()`` reaches the weights and the lr is not zero.
    """

    code = "S102"
    cause = None
    title = "Cannot overfit one batch"
    severity = Severity.WARNING
    stage = "probe"
    needs = ("probe", "probe.overfit")

    def check(self, s: Signals) -> Finding | None:
        o = s.probe.overfit
        if o.reached_at is not None:
            return None
        last = o.losses[-1] if o.losses else None
        return self.finding(
            f"After {o.steps} steps on the same {o.rows} rows ({o.optimizer}, lr {num(o.lr)}) the loss is {num(last)}, "
            f"above the goal of {num(o.goal)} (a tenth of the constant predictor's {num(o.baseline)}).",
            confidence=0.8,
            evidence={"steps": o.steps, "rows": o.rows, "first_loss": rnd(o.losses[0]) if o.losses else None,
                      "last_loss": rnd(last), "goal": rnd(o.goal), "baseline": rnd(o.baseline), "lr": o.lr},
            fix="A symptom: see the root cause ranked above it.")
