"""E001: one class predicted for nearly every row while the logits vary (defib predict)."""

from __future__ import annotations

from defib.signals.predict import PredictSignals
from defib.rules.base import Finding, Rule, Severity, register


@register
class FlatDecoding(Rule):
    """One class is predicted for nearly every row while the model's logits do vary.

    What it detects:
        At prediction time, one class for at least ``max_top_share`` of the
        rows, while the model's logits, centred per row, vary across the same
        rows by at least ``min_output_spread`` (logits live on a unit scale:
        a spread of 0.3 moves a class probability by several points).
        Regression is not judged: its decoding is a linear map, which cannot
        flatten what the outputs carry.

    Why it flattens predictions:
        The model separates the inputs, but the step from logits to classes
        throws that away: a class bias (or prior correction) so large that
        the argmax never changes, an argmax over the wrong dimension, a
        threshold that no row reaches. The differences are in the outputs;
        the fix is in the decoding or the bias, not in more training.

    Example:
        ``model.classifier.bias.data[0] += 20`` (a botched prior
        correction), or ``preds = logits.argmax(0)`` over the batch.

    Fix:
        Check the argmax dimension and the head's bias; if the logits rank
        the rows correctly, recalibrate the bias (or a threshold) on the dev
        set instead of retraining.
    """

    code = "E001"
    cause = "eval.decoding"
    title = "One class predicted although the logits vary"
    severity = Severity.WARNING
    needs = ("output_spread", "top_class_share")
    stage = "predict"

    max_top_share = 0.95        # one class for this share of rows is a collapsed classifier
    min_output_spread = 0.3     # centred logits varying by this much across rows carry information
    min_rows = 20               # rows needed to judge a spread

    def check(self, s: PredictSignals) -> Finding | None:
        if s.rows < self.min_rows or s.output_spread < self.min_output_spread:
            return None
        if s.top_class_share < self.max_top_share:
            return None
        return self.finding(
            f"{s.top_class_share:.0%} of the {s.rows} rows are predicted as class {s.top_class!r}, while the "
            f"model's centred logits vary by {s.output_spread:.3g} across rows: the differences are there, but the "
            "argmax ignores them.",
            confidence=0.6, evidence={"top_class": s.top_class, "top_class_share": s.top_class_share,
                                      "output_spread": s.output_spread, "rows": s.rows},
            fix="Check the head's bias (model.classifier.bias) and the argmax dimension; recalibrate the bias "
                "on the dev set if the logits rank the rows well.")
