"""S002: predictions still narrow, but the run is learning: a slow start, not a flatline."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num as _f, rnd as _r
from defib.rules.measures import recent_trend
from defib.rules.symptom.s001_flat_predictions import FlatPredictions
from defib.signals.run import Signals


@register
class SlowStart(Rule):
    """Predictions are still narrow, but the loss keeps falling below the constant predictor's.

    What it detects:
        What S001 would call a flatline (spread under 0.15 of the targets',
        loss within 10% of the constant predictor's, after the grace period)
        while the run is plainly moving: over the last 40 optimizer steps the
        mean loss is under the constant-predictor loss by at least 0.15^2 of
        it (the gain of a calibrated predictor at the flat line), the later
        half's mean loss is not above the earlier half's by more than a
        standard error of the per-step losses, and the prediction spread of
        the later half is at least 25% above the earlier half's. The loss is
        too noisy (batches of 8 vary by half the baseline) to prove a slow fall
        over 40 steps; the spread, a mean over 16 batches, is not, and a run
        stuck at the baseline fails it.

    Why it flattens predictions:
        It does not, yet: a fresh head on a pretrained encoder, a learning rate
        decaying linearly from its first step with no warmup, or a small head
        learning rate, leaves predictions near the targets' mean for the first
        hundred steps or more. The level looks like a collapse; the direction
        says otherwise. A collapse may also show a falling loss, from a high
        start down *to* the baseline, which is why the loss must fall below it.

    Example:
        ``run_glue.py`` on STS-B, Trainer defaults (lr 5e-5, no warmup, linear
        decay), step 100: prediction std 0.21 against target std 1.46, loss
        1.92 and falling, constant-predictor loss 2.13.

    Fix:
        Nothing is broken. To learn faster: a warmup of 6-10% of the run
        (``warmup_ratio=0.06``, ``num_warmup_steps``), a higher learning rate
        for the freshly initialised head (its own param group at 10-100x the
        encoder's), or more steps.
    """

    code = "S002"
    cause = None
    title = "Slow start: predictions still narrow, loss falling"
    severity = Severity.INFO
    needs = ("preds", "preds.spread", "preds.loss_window", "preds.baseline", "loss")

    def check(self, s: Signals) -> Finding | None:
        since = FlatPredictions().flat_since(s)
        if since is None:
            return None
        t = recent_trend(s)
        if t is None or not t.learning:
            return None
        o = s.optim
        planned = o.planned_steps if o is not None else None
        where_in_run = f"step {s.step} of {planned} planned" if planned else f"step {s.step}"
        return self.finding(
            f"At {where_in_run} predictions are still narrow ({_f(t.spread_now)} of the targets' spread, from "
            f"{_f(t.spread_before)} {t.steps // 2} steps earlier), but the loss keeps falling below the constant "
            f"predictor's ({_f(t.loss_before)} -> {_f(t.loss_now)} against {_f(t.baseline)}): a slow start, "
            "not a flatline.",
            confidence=0.8,
            evidence={"since_step": since, "window_steps": t.steps, "spread_before": _r(t.spread_before),
                      "spread_now": _r(t.spread_now), "loss_before": _r(t.loss_before), "loss_now": _r(t.loss_now),
                      "window_loss": _r(t.loss_mean),
                      "baseline_loss": _r(t.baseline), "planned_steps": planned,
                      "flat_spread": thresholds.FLAT_SPREAD},
            fix="To learn faster: warmup_ratio=0.06 (or num_warmup_steps = 6% of the run), a param group for the "
                "head at 10-100x the encoder's learning rate, or more steps.")
