"""D010: at the end of a flatlined run (or a bi-encoder's whose scores ignored its labels), the encoder's features
predict the run's labels no better than shuffled ones."""

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
        Rotten Tomatoes or STS-B rows.

        A bi-encoder (two texts, one similarity score against the pair's
        label: sentence-transformers' CosineSimilarityLoss, CoSENTLoss,
        AnglELoss, or a loop comparing two encodings) keeps its rows as
        pairs; the read-out sees ``u * v`` and ``|u - v|`` of each pair's
        mean-pooled unit vectors, and its positive control is the share of
        word pieces the two texts share. It needs no flatline: at the end of
        any run whose own scores for the pairs, at its first steps (the
        pretrained similarity: a bi-encoder has no new head), do not follow
        their labels (one-sided rank-correlation p > 0.01), the control runs.
        On 256 STS-B pairs and all-MiniLM-L6-v2, labels that belong score an
        R^2 of 0.76 against 0.00 +- 0.01 for their shuffles, and the pairs'
        overlap 0.38. For encoders up to 400M parameters loaded from a folder
        on disk; ``DEFIB_LABEL_CONTROL=0`` turns it off.

    Why it flattens predictions:
        Labels not tied to their texts (texts reordered or filtered apart from
        their labels) leave the model nothing to learn but the label mean or
        the majority class: the loss settles at the constant predictor's and
        the predictions go flat, exactly as the run's did. A bi-encoder's
        scores bunch together more slowly: training on such labels wears away
        the similarity it was pretrained with.

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
        if lc.trigger == "pair_scores":
            why = (f"The bi-encoder's own scores for {got.rows} of its training pairs, at its first steps, did not "
                   f"follow their labels (Spearman {num(lc.scores_rho)}, p = {num(lc.scores_p)}).")
        else:
            why = "The run flatlined with no other cause."
        rows, read_off = (("pairs", "how many word pieces the two texts share") if lc.pairs
                          else ("rows", "which of a few common tokens each holds"))
        return self.finding(
            f"{why} A linear read-out of the pretrained encoder's features for {got.rows} of its training {rows} "
            f"predicts held-out labels with an R^2 of {num(got.score)}, no better than the same labels shuffled "
            f"({num(got.null_mean)} on average, {num(got.null_q95)} for the best 1 in 20; p = {num(got.p_value)}), "
            f"while it does predict labels read off the same texts ({read_off}; R^2 {num(power.score)}, "
            f"p = {num(power.p_value)}): the labels do not seem to go with their texts.",
            confidence=0.7,
            evidence={"probe_r2": rnd(got.score), "shuffled_r2_mean": rnd(got.null_mean),
                      "shuffled_r2_sd": rnd(got.null_sd), "shuffled_r2_q95": rnd(got.null_q95),
                      "p_value": rnd(got.p_value), "rows": got.rows, "permutations": got.permutations,
                      # the positive control: common tokens' presence, or a pair's overlap (``pairs``)
                      "token_label_r2": rnd(power.score), "token_label_p_value": rnd(power.p_value),
                      "checkpoint": lc.checkpoint, "control_seconds": lc.seconds, "trigger": lc.trigger,
                      "pairs": lc.pairs, "scores_spearman": rnd(lc.scores_rho), "scores_p_value": rnd(lc.scores_p)},
            where=s.loss.label_where if s.loss is not None else None,
            fix="Reorder or filter texts and labels together (one list of pairs, or one table); print a few "
                "(text, label) pairs right before training.")
