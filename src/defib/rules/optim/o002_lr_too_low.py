"""O002: learning rate so low that nothing moves."""

from __future__ import annotations

import math
import statistics

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num
from defib.rules.optim.common import lr_now, median_update_ratio, peak_lr
from defib.signals.run import Signals


@register
class LearningRateTooLow(Rule):
    """Updates are a vanishing fraction of the weights, by the configured learning rate.

    What it detects:
        A median update/weight ratio below ``min_ratio`` over all groups that
        receive gradients, while the learning rate is still at its configured
        value (so it is not a schedule that decayed it: see O003) and the
        loss scale is ordinary (see L005).

    Why it flattens predictions:
        A freshly initialised head outputs nearly the same small value for
        every input. If it barely moves, it keeps doing so: the predictions
        stay flat at their initial value and the loss stays at its initial
        level.

    Example:
        ``AdamW(model.parameters(), lr=1e-8)`` (a typo for 1e-5).

    Fix:
        ``lr=2e-5`` for BERT-family fine-tuning (1e-5 to 5e-5); run
        ``defib probe`` for a learning-rate range test.
    """

    code = "O002"
    cause = "optim.lr_too_low"
    title = "Learning rate too low for what must move"
    severity = Severity.ERROR
    needs = ("optim",)

    # median update/weight ratio below this: ~100x under a healthy step (1e-4..5e-4 measured)
    min_ratio = thresholds.LR_TOO_LOW_UPDATE
    schedule_share = 0.1                        # current lr below this share of the configured one: the schedule's doing
    min_step = 3
    loss_scale = thresholds.LOSS_SCALE          # a loss scaled below 1 / this explains small steps: L005's
    healthy_update = thresholds.HEALTHY_UPDATE  # the update ratio of a healthy step: the unit of the messages

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        if s.step < self.min_step or not o.groups_with_grad:
            return None
        lr, peak = lr_now(o), peak_lr(o)
        if lr is None or not peak:
            return None
        # judge the steps taken at (near) the configured rate, so a schedule's warmup or decay is not blamed here
        near_peak = {st for st, v in o.lr.pairs() if v >= 0.5 * peak}
        ratios = [v for series in o.update_ratio.values() for st, v in series.pairs()
                  if st in near_peak and math.isfinite(v)]
        ratio = statistics.median(ratios) if ratios else median_update_ratio(o)
        if ratio is None or ratio >= self.min_ratio:
            return None
        if not ratios and lr < self.schedule_share * peak:
            return None
        if s.loss is not None and s.loss.scale_factor is not None and s.loss.scale_factor < 1 / self.loss_scale:
            return None
        return self.finding(
            f"Each step changes the weights by {ratio:.2g} of their norm (median), about {self.healthy_update / max(ratio, 1e-30):.0f}x "
            f"less than a healthy fine-tuning step; learning rate {num(peak)} at its peak with {o.optimizer}.",
            confidence=0.85, where=o.lr_where or o.where,
            evidence={"update_ratio_median": ratio, "lr": lr, "configured_lr": peak, "optimizer": o.optimizer},
            fix="lr=2e-5  # typical for BERT-family fine-tuning")
