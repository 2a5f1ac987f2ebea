"""D106: regression targets far from zero mean and unit scale."""

from __future__ import annotations

from defib.signals.check import CheckSignals
from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num


@register
class TargetScaleInData(Rule):
    """Regression targets whose mean or spread is far beyond what a fresh head outputs.

    What it detects:
        The targets' mean and standard deviation against the unit scale of a
        freshly initialised head (a linear layer over LayerNorm-ed hidden
        states starts with outputs of order 0.1 to 1).

    Why it flattens predictions:
        With Adam at fine-tuning learning rates each weight moves by about
        the learning rate per step, so the output moves by roughly
        ``lr x hidden_size`` per step; targets in the tens or hundreds take
        thousands of steps just to reach their mean. Meanwhile the gradient
        says "go up" for every input alike, and the input-dependent part of
        the prediction never develops. The run-time rule D008 sees this
        happen; this one sees it coming.

    Example:
        ``labels = df["score"] * 20  # 0..100``

    Fix:
        Standardise for training, ``y = (y - mean) / std``, and map the
        predictions back with ``pred * std + mean``; this finding gives the
        numbers.
    """

    code = "D106"
    cause = "data.target_scale"
    title = "Regression targets far from zero mean and unit scale"
    severity = Severity.WARNING
    needs = ("labels", "labels.std", "labels.mean")
    stage = "check"

    max_scale = thresholds.TARGET_SCALE  # |mean| or std above this many output units is out of a fresh head's reach

    def check(self, s: CheckSignals) -> Finding | None:
        lab = s.labels
        if s.task != "regression" or lab.std == 0:
            return None
        mean, std = lab.mean, lab.std
        if max(abs(mean), std) < self.max_scale:
            return None
        return self.finding(
            f"Targets have mean {num(mean)} and std {num(std)} (range {num(lab.min)}..{num(lab.max)}), "
            f"far beyond the unit scale a fresh head starts at.",
            confidence=0.75,
            evidence={"target_mean": mean, "target_std": std, "target_min": lab.min, "target_max": lab.max},
            fix=f"y = (y - {mean:.4g}) / {std:.4g} for training; predictions back with pred * {std:.4g} + {mean:.4g}")
