"""D006: the labels reaching the loss are constant, missing or NaN."""

from __future__ import annotations

from collections import Counter

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class ConstantLabels(Rule):
    """Every target is (nearly) the same value, or NaN.

    What it detects:
        The targets seen at the loss: their standard deviation relative to
        their magnitude, the number of distinct classes, the share of
        regression targets equal to one value (an integer division or a
        failed parse leaves most rows at 0), and NaN targets (a missing or
        unparsable label; an infinite one is a transform that overflowed,
        ``log(0)``, which O009 names as a non-finite loss).

    Why it flattens predictions:
        If every label is the same, predicting that label for everything is
        the perfect answer: the model is right to flatline. The bug is
        upstream, usually a parsing step (a wrong column, a failed float
        conversion filled with a default, a label map that sends everything
        to one id).

    Example:
        ``labels = [label_map.get(x, 0) for x in df["label"]]`` where the keys
        never match, so every label is 0.

    Fix:
        Print the label distribution right before training and fix the
        parsing; drop or repair rows with NaN labels.
    """

    code = "D006"
    cause = "data.constant_labels"
    title = "Labels are (nearly) constant, missing or unparsable"
    severity = Severity.ERROR
    needs = ("preds", "preds.target_std")

    min_targets = 48        # targets seen before judging
    rel_std = 1e-3          # std below this share of (|mean| + 1) is constant
    # regression targets: one exact value in this share of recent rows is nearly constant
    max_mode_share = thresholds.CONSTANT_TARGET_SHARE

    def check(self, s: Signals) -> Finding | None:
        p = s.preds
        seen = p.n_seen
        missing = p.target_nonfinite - p.target_infinite
        if missing:
            return self.finding(
                f"{missing} targets reaching the loss are NaN.",
                confidence=0.95, evidence={"nonfinite_targets": p.target_nonfinite},
                where=(s.loss.label_where or s.loss.where) if s.loss else None,
                fix="Drop or repair rows whose label is missing before building the dataset.")
        if seen < self.min_targets or p.target_infinite:
            # infinite targets are a transform that overflowed (log of 0, 1/0), not a missing label: O009 names it
            return None
        mean = p.target_mean or 0.0
        if p.task == "classification":
            classes = len(p.label_counts)
            if classes != 1:
                return None
            msg = f"All {sum(p.label_counts.values())} labels seen are class {next(iter(p.label_counts))}."
        else:
            mode, share = _mode(p.recent_targets)
            if p.target_std <= self.rel_std * (abs(mean) + 1):
                msg = f"All {seen} targets seen are {mean:.4g} (std {p.target_std:.2g})."
            elif p.task == "regression" and share >= self.max_mode_share:
                msg = (f"{share:.0%} of the recent regression targets are exactly {mode:.4g}: the targets are nearly "
                       "constant, so predicting that value for everything is nearly optimal.")
            else:
                return None
        in_order = s.data is not None and s.data.shuffle is False
        if in_order:  # an in-order loader shows one class at a time: D004 explains this first
            msg += " The loader reads in order, so the rest of the data may hold other labels."
        return self.finding(msg, confidence=0.5 if in_order else 0.95,
                            evidence={"targets_seen": seen, "target_mean": round(mean, 6),
                                      "target_std": p.target_std, "label_counts": p.label_counts},
                            where=(s.loss.label_where or s.loss.where) if s.loss else None,
                            fix="Print the label column right before training; fix the parsing or the label map.")


def _mode(values: list[float]) -> tuple[float, float]:
    """The most common exact value and its share (0 share for no values)."""
    if not values:
        return 0.0, 0.0
    counts = Counter(values)
    value, n = counts.most_common(1)[0]
    return value, n / len(values)
