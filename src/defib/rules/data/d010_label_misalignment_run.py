"""D010: at the end of a flatlined run, the encoder's features predict the run's labels no better than shuffled ones."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num, rnd
from defib.signals.run import Signals


@register
class LabelsDoNotBelongInRun(Rule):
    """The run's labels look, to a read-out of the pretrained encoder's features, like a shuffle of themselves.

    What it detects:
        When a watched run ends with flat predictions and no cause in sight,
        defib encodes up to 256 training rows the run kept (as the encoder
        received them, with their targets) with a fresh copy of the encoder
        from its checkpoint folder, and fits a ridge read-out of those
        features to the labels on four fifths of the rows, scoring it on the
        fifth it did not see (five folds; R^2 against the constant
        predictor). The same is done for 200 random permutations of the
        labels. Reported when the real labels score no better than 1 shuffle
        in 20 (p > 0.05), and only when the same read-out does predict labels
        that surely belong to these rows (whether a row holds each of the 8
        tokens that about half the rows hold; p <= 0.01): so the features and
        the rows were enough to show labels that belong. Pretrained features
        carry what a text says: on all-MiniLM-L6-v2, labels that belong score
        5 to 7 shuffled standard deviations above their shuffles from 256
        Rotten Tomatoes or STS-B rows. For encoders up to 400M parameters
        loaded from a folder on disk; ``DEFIB_LABEL_CONTROL=0`` turns it off.

    Why it flattens predictions:
        Labels not tied to their texts (texts reordered or filtered apart from
        their labels) leave the model nothing to learn but the label mean or
        the majority class: the loss settles at the constant predictor's and
        the predictions go flat, exactly as the run's did.

    Example:
        ``texts = [texts[i] for i in order]`` to bucket by length, with the
        labels left in the old order; ``labels = labels[1:]`` after dropping a
        header row from the texts only.

    Fix:
        Reorder or filter texts and labels together (one list of pairs, or one
        table); print a few (text, label) pairs right before training.
    """

    code = "D010"
    title = "Labels do not go with their texts (checked at the end of the run)"
    cause = "data.label_misalignment"
    severity = Severity.WARNING  # a statistical test, as D201's
    stage = "run"
    needs = ("label_control", "label_control.labels", "label_control.power")

    def check(self, s: Signals) -> Finding | None:
        lc = s.label_control
        got, power = lc.labels, lc.power
        if lc.skipped or got.p_value <= thresholds.LABELS_UNPREDICTED_P or power.p_value > thresholds.PROBE_POWER_P:
            return None
        return self.finding(
            f"The run flatlined with no other cause. A linear read-out of the pretrained encoder's features for "
            f"{got.rows} of its training rows predicts held-out labels with an R^2 of {num(got.score)}, no better than "
            f"the same labels shuffled ({num(got.null_mean)} on average, {num(got.null_q95)} for the best 1 in 20; "
            f"p = {num(got.p_value)}), while it does predict labels read off the same texts (which of a few common "
            f"tokens each holds; R^2 {num(power.score)}, p = {num(power.p_value)}): the labels do not seem to go with "
            "their texts.",
            confidence=0.7,
            evidence={"probe_r2": rnd(got.score), "shuffled_r2_mean": rnd(got.null_mean),
                      "shuffled_r2_sd": rnd(got.null_sd), "shuffled_r2_q95": rnd(got.null_q95),
                      "p_value": rnd(got.p_value), "rows": got.rows, "permutations": got.permutations,
                      "token_label_r2": rnd(power.score), "token_label_p_value": rnd(power.p_value),
                      "checkpoint": lc.checkpoint, "control_seconds": lc.seconds},
            where=s.loss.label_where if s.loss is not None else None,
            fix="Reorder or filter texts and labels together (one list of pairs, or one table); print a few "
                "(text, label) pairs right before training.")
