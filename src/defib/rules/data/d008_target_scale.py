"""D008: regression targets on a scale a fresh head cannot reach in time."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num
from defib.signals.run import Signals


@register
class TargetScale(Rule):
    """Regression targets far from zero mean and unit scale.

    What it detects:
        The targets' mean and standard deviation against the unit scale of a
        fresh head's outputs (a linear layer over LayerNorm-ed hidden states
        starts with outputs of order 0.1 to 1), together with predictions that
        have not caught up: their mean far from the targets' or their spread
        a small share of the targets'.

    Why it flattens predictions:
        With Adam at fine-tuning learning rates each weight moves by about the
        learning rate per step, so the head's output can move by roughly
        ``lr x hidden_size`` per step. Targets in the tens or hundreds take
        thousands of steps just to reach their mean; meanwhile the loss is
        dominated by the offset, the gradient says "go up" for every input,
        and the input-dependent part never develops.

    Example:
        ``labels = df["score"] * 20  # 0..100``

    Fix:
        Standardise: ``y = (y - mean) / std`` for training, and map
        predictions back with ``pred * std + mean``.
    """

    code = "D008"
    cause = "data.target_scale"
    title = "Regression targets far from zero mean and unit scale"
    severity = Severity.ERROR
    needs = ("preds", "preds.target_std", "preds.target_mean", "loss")

    max_scale = thresholds.TARGET_SCALE  # |mean| or std of the targets above this many output units is out of reach
    lag_share = 0.5                      # predictions spread less than this share of the targets': not caught up

    def check(self, s: Signals) -> Finding | None:
        p = s.preds
        if p.task != "regression" or s.loss.family != "regression":
            return None
        mean, std = p.target_mean, p.target_std
        if max(abs(mean), std) < self.max_scale:
            return None
        pred_mean = p.window_mean if p.window_mean is not None else 0.0
        pred_std = p.window_std or 0.0
        if abs(pred_mean - mean) < std and pred_std >= self.lag_share * std:
            return None  # the predictions did reach the targets' scale
        sev = Severity.ERROR if pred_std < self.lag_share * std else Severity.WARNING
        return self.finding(
            f"Targets have mean {num(mean)} and std {num(std)} while predictions have mean {num(pred_mean)} "
            f"and std {num(pred_std)}: the head is still chasing the targets' scale.",
            confidence=0.85, severity=sev,
            evidence={"target_mean": round(mean, 4), "target_std": round(std, 4),
                      "pred_mean": round(pred_mean, 4), "pred_std": round(pred_std, 4)},
            where=s.loss.label_where or s.loss.where,
            fix=f"y = (y - {mean:.3g}) / {std:.3g} for training; predictions back with pred * {std:.3g} + {mean:.3g}")
