"""D008: regression targets on a scale a fresh head cannot reach in time, or that saturates the loss's gradient."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num
from defib.signals.run import Signals


@register
class TargetScale(Rule):
    """Regression targets far from zero mean and unit scale.

    What it detects:
        The targets' mean and standard deviation against what the loss can do
        with them from where a fresh head starts (outputs of order 0.1 to 1
        around zero), together with predictions that have not caught up: their
        mean far from the targets' or their spread a small share of the
        targets'. Two ways: targets beyond a fresh head's reach in output
        units, or targets so far from zero, counted in the loss's own linear
        zone, that the loss gave most examples the same saturated gradient
        (Huber's or smooth L1's beyond ``delta``/``beta``, L1's always),
        measured on the gradient ``backward()`` sent to the predictions.

    Why it flattens predictions:
        With Adam at fine-tuning learning rates each weight moves by about the
        learning rate per step, so the head's output can move by roughly
        ``lr x hidden_size`` per step. Targets in the tens or hundreds take
        thousands of steps just to reach their mean; meanwhile the loss is
        dominated by the offset, the gradient says "go up" for every input,
        and the input-dependent part never develops. A Huber loss with
        ``delta=1`` on 0-5 scores does the same at a much smaller scale: every
        example more than ``delta`` above its prediction gets the same
        gradient, so until the predictions reach the targets' mean the loss
        says nothing about which example is which, and the run's steps go to
        moving the mean.

    Example:
        ``labels = df["score"] * 20  # 0..100``, or raw 0-5 scores under
        ``F.huber_loss(pred, y, delta=1.0)``.

    Fix:
        Standardise: ``y = (y - mean) / std`` for training, and map
        predictions back with ``pred * std + mean``. A Huber's ``delta`` (a
        smooth L1's ``beta``) then counts in standard deviations.
    """

    code = "D008"
    cause = "data.target_scale"
    title = "Regression targets far from zero mean and unit scale"
    severity = Severity.ERROR
    needs = ("preds", "preds.target_std", "preds.target_mean", "loss")

    max_scale = thresholds.TARGET_SCALE  # |mean| or std of the targets above this many output units is out of reach
    lag_share = 0.5                      # predictions spread less than this share of the targets': not caught up
    saturated_share = 2 / 3  # two in three examples of a batch given one saturated gradient: it mostly moves the mean
    early_samples = 3       # sampled steps that show the loss at the head's first outputs (steps 1, 2 and the next)

    def check(self, s: Signals) -> Finding | None:
        p = s.preds
        if p.task != "regression" or s.loss.family != "regression":
            return None
        mean, std = p.target_mean, p.target_std
        pred_mean = p.window_mean if p.window_mean is not None else 0.0
        pred_std = p.window_std or 0.0
        if abs(pred_mean - mean) < std and pred_std >= self.lag_share * std:
            return None  # the predictions did reach the targets' scale
        sev = Severity.ERROR if pred_std < self.lag_share * std else Severity.WARNING
        evidence = {"target_mean": round(mean, 4), "target_std": round(std, 4),
                    "pred_mean": round(pred_mean, 4), "pred_std": round(pred_std, 4)}
        where = s.loss.label_where or s.loss.where
        fix = f"y = (y - {mean:.3g}) / {std:.3g} for training; predictions back with pred * {std:.3g} + {mean:.3g}"
        if max(abs(mean), std) >= self.max_scale:
            return self.finding(
                f"Targets have mean {num(mean)} and std {num(std)} while predictions have mean {num(pred_mean)} "
                f"and std {num(pred_std)}: the head is still chasing the targets' scale.",
                confidence=0.85, severity=sev, evidence=evidence, where=where, fix=fix)
        saturated = self._saturated(s)
        if saturated is None:
            return None
        share, until, start = saturated
        return self.finding(
            f"Targets have mean {num(mean)} and std {num(std)} while predictions started at {num(start)}: through "
            f"step {until} the loss gave {share:.0%} of the examples the same saturated gradient, which only moves "
            f"the predictions' mean; they now have mean {num(pred_mean)} and std {num(pred_std)}.",
            confidence=0.8, severity=sev, where=where,
            evidence={**evidence, "pred_start": round(start, 4), "saturated_share": round(share, 4),
                      "saturated_until_step": until},
            fix=fix + " (a Huber delta or smooth-L1 beta then counts in standard deviations)")

    def _saturated(self, s: Signals) -> tuple[float, int, float] | None:
        """(share, last step, start): most examples got one saturated gradient at the head's first outputs, and
        those outputs sat nearer zero than the targets' mean (the targets' offset saturated it, not a wild head)."""
        p, pairs = s.preds, s.loss.grad_saturated.pairs()
        early = sorted(v for _, v in pairs[:self.early_samples])
        starts = p.pred_quantiles.get("p50")
        if not early or starts is None or not len(starts) or not p.target_std:
            return None
        share, start = early[(len(early) - 1) // 2], starts.values[0]  # the median; of two, the lower
        if share < self.saturated_share or abs(start) >= abs(p.target_mean - start):
            return None
        until = pairs[len(early) - 1][0]  # the early samples, then as long as the later ones stay saturated
        for step, value in pairs[len(early):]:
            if value < self.saturated_share:
                break
            until = step
        return share, until, start
