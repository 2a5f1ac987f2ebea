"""D201 (probe): training on the real labels teaches no more than training on shuffled ones."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num, rnd
from defib.signals.run import Signals


@register
class LabelsDoNotBelong(Rule):
    """The label-permutation control: real labels carry over to held-out rows no better than shuffled labels.

    What it detects:
        ``defib probe`` trains the model briefly on half the sample, twice
        from the same start: once on the real labels, once on the same labels
        shuffled across rows, and measures the loss on the other half. Labels
        that belong to their texts teach something that carries over, so the
        real-label run ends clearly below the constant predictor or the
        shuffled run. Labels that do not belong are exchangeable with a
        shuffle of themselves, so both runs end alike. Reported when the real
        labels win neither way (by ``margin`` of the constant-predictor loss)
        and the two runs end within ``max_gap`` of each other, while the same
        model can overfit one batch (so it can learn, and the labels are what
        is wrong) and its encoder is pretrained and answers differently to
        different inputs. Judged only with at least ``min_held_out`` held-out
        rows (``--rows 96`` and up; the default 64 rows only report the
        numbers): with a few dozen rows and steps a real task shows no gain
        either (a tiny unpretrained BERT on a learnable task, MiniLM on
        STS-B pairs). Even then a warning: a hard task can look the same.

    Why it flattens predictions:
        When labels are not tied to their texts (rows shuffled separately from
        labels, a join on the wrong key, an off-by-one after filtering), the
        only thing the model can learn is the label mean or the majority
        class: the loss settles at the constant predictor's and predictions
        go flat.

    Example:
        ``texts = df.text.tolist(); labels = df.sample(frac=1).label.tolist()``,
        or ``labels = labels[1:]`` after dropping a header row from texts only.

    Fix:
        Keep texts and labels in one table and shuffle rows, never columns;
        check a few (text, label) pairs by eye after every join or filter.
    """

    code = "D201"
    cause = "data.label_misalignment"
    title = "Labels do not belong to their texts"
    severity = Severity.WARNING
    stage = "probe"
    needs = ("probe", "probe.permutation", "probe.overfit")

    margin = 0.1   # share of the constant-predictor loss the real labels must win by (over it, or over shuffled)
    max_gap = 0.3  # misaligned labels are exchangeable with shuffled ones: both runs end within this share
    min_held_out = 48  # fewer held-out rows (and as few training rows) leave a real task no room to show a gain
    # a model that answers the same for every input (S101) learns nothing from texts
    min_output_spread = thresholds.CONSTANT_OUTPUT_SPREAD
    # a random encoder (M102) has no features for the labels to go with
    max_default_layernorms = thresholds.RANDOM_ENCODER_LAYERNORMS

    def check(self, s: Signals) -> Finding | None:
        p, o, v = s.probe.permutation, s.probe.overfit, s.probe.sensitivity
        if p.held_out < self.min_held_out:
            return None
        if o.reached_at is None:  # the model cannot learn at all: another cause (see S102)
            return None
        if v is not None and (v.output_spread < self.min_output_spread
                              or (v.layernorm_at_init or 0.0) >= self.max_default_layernorms):
            return None  # the model, not the labels, explains it
        slack = self.margin * p.baseline
        beats_constant = p.real_loss < p.baseline - slack
        beats_shuffled = p.real_loss < p.permuted_loss - slack
        if beats_constant or beats_shuffled:
            return None
        if abs(p.real_loss - p.permuted_loss) > self.max_gap * max(p.real_loss, p.permuted_loss):
            return None  # the two runs disagree: noise from a few rows, not the exchangeable pair misalignment makes
        return self.finding(
            f"After {p.steps} steps on {p.rows - p.held_out} rows, the held-out loss is {num(p.real_loss)} with the real "
            f"labels and {num(p.permuted_loss)} with the labels shuffled (constant predictor {num(p.baseline)}), though "
            f"the model overfits one batch in {o.reached_at} steps: the labels may not go with their texts.",
            confidence=0.6,
            evidence={"held_out_loss_real": rnd(p.real_loss), "held_out_loss_permuted": rnd(p.permuted_loss),
                      "constant_baseline": rnd(p.baseline), "held_out_rows": p.held_out, "steps": p.steps,
                      "overfit_steps": o.reached_at},
            fix="Shuffle rows, never a column alone; print a few (text, label) pairs after each join or filter.")
