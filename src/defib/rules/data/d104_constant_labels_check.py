"""D104: the label column is (nearly) one value."""

from __future__ import annotations

from defib.signals.check import CheckSignals
from defib.signals.run import TOKEN_TASK
from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num


@register
class ConstantLabelsInData(Rule):
    """Every label, or nearly every one, is the same value.

    What it detects:
        A classification column with one class; a multilabel column where
        every label is always on or always off; regression targets with zero
        spread, or with one value in at least ``dominant_share`` of rows (an
        integer division, a failed parse that defaulted, a join that lost the
        real labels).

    Why it flattens predictions:
        A model can only learn what varies. With one label the loss is
        minimised by predicting it for every input, which is exactly the
        flatline; with one value in nearly all rows, predicting that value
        is almost as good, and the few other rows are too few to pull away.

    Example:
        ``df["label"] = df["sentiment"].map({"Positive": 1, "Negative": 0}).fillna(0)``
        when the column holds ``"positive"`` in lower case: every label is 0.

    Fix:
        Look at the raw label column and the conversion that produced it
        (``value_counts()``); fix the mapping or the parse, then check again.
    """

    code = "D104"
    cause = "data.constant_labels"
    title = "Labels are (nearly) constant"
    severity = Severity.ERROR
    needs = ("labels",)
    stage = "check"

    min_rows = 1            # one row has one label: a file of one row teaches nothing, and must not pass as healthy
    dominant_share = thresholds.CONSTANT_TARGET_SHARE  # regression: one value in this share of rows is nearly constant

    def check(self, s: CheckSignals) -> Finding | None:
        lab = s.labels
        if lab.rows < self.min_rows:
            return None
        counts = lab.counts or {}
        fix = "Inspect the raw labels (df[label].value_counts()) and the code that converts them."
        if s.task == TOKEN_TASK and len(counts) == 1:
            return self.finding(f"All {lab.tags:,} tokens ({lab.rows:,} rows) have tag {next(iter(counts))!r}: "
                                "there is nothing to learn.", confidence=0.97,
                                evidence={"tag_counts": _shown(counts)}, fix=fix)
        if s.task == "classification" and len(counts) == 1:
            value = next(iter(counts))
            every = f"All {lab.rows:,} rows have" if lab.rows > 1 else "The only row has"
            return self.finding(f"{every} label {value!r}: there is nothing to learn.",
                                confidence=0.97, evidence={"label_counts": _shown(counts)}, fix=fix)
        if s.task == "multilabel" and counts:
            varying = [k for k, n in counts.items() if 0 < n < lab.rows]
            if not varying:
                return self.finding(f"Every one of the {len(counts)} labels is on in all rows or in none "
                                    f"({lab.rows:,} rows): no label varies.", confidence=0.95,
                                    evidence={"label_counts": _shown(counts)}, fix=fix)
        if s.task == "regression" and lab.std is not None:
            if lab.std == 0:
                every = f"All {lab.rows:,} targets equal" if lab.rows > 1 else "The only target is"
                return self.finding(f"{every} {num(lab.mean)}: there is nothing to learn.",
                                    confidence=0.97, evidence={"target_mean": lab.mean, "target_std": 0.0}, fix=fix)
            if counts:
                value, n = max(counts.items(), key=lambda kv: kv[1])
                if n / lab.rows >= self.dominant_share:
                    return self.finding(
                        f"{n / lab.rows:.0%} of the {lab.rows:,} targets are exactly {num(value)} (std {num(lab.std)}); "
                        "predicting that value for every input is nearly optimal.",
                        confidence=0.8, severity=Severity.WARNING,
                        evidence={"value": value, "share": round(n / lab.rows, 4), "target_std": lab.std}, fix=fix)
        return None


def _shown(counts: dict) -> dict[str, int]:
    return {str(k): v for k, v in list(counts.items())[:20]}
