"""D010: at the end of a flatlined run, the label-permutation control says the labels do not belong to their texts."""

from __future__ import annotations

from defib.rules.base import Finding, register
from defib.rules.data.d201_label_misalignment import LabelsDoNotBelong
from defib.rules.fmt import num, rnd
from defib.rules.measures import labels_carry_over
from defib.signals.run import Signals


@register
class LabelsDoNotBelongInRun(LabelsDoNotBelong):
    """A run's training rows teach a fresh copy of the encoder no more with their labels than with the labels shuffled.

    What it detects:
        When a watched run ends with flat predictions and no cause in sight,
        defib trains a fresh copy of the encoder, loaded from its checkpoint
        folder, on the CPU, on up to 128 training rows the run kept as the
        encoder received them with their targets: D201's control (half the
        rows train, half are held out; once on the real labels, once on the
        same labels shuffled). Reported on D201's terms (the real labels win
        neither way, the two runs end alike, the copy can overfit one batch
        and answers differently to different inputs), and only when the same
        copy, trained the same way, does learn a label that surely belongs to
        these rows (whether a row contains a given token): so the budget was
        enough for labels that belong to show it. A warning: a task far harder
        than spotting a token can still look the same. Off unless
        ``DEFIB_LABEL_CONTROL=1``; at most 300 s, for encoders up to 150M
        parameters loaded from a folder on disk.

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
    title = "Labels do not belong to their texts (control at the end of the run)"
    stage = "run"
    needs = ("label_control", "label_control.probe", "label_control.power")

    def check(self, s: Signals) -> Finding | None:
        lc = s.label_control
        if lc.skipped or not labels_carry_over(lc.power, self.margin) or not self.exchangeable(lc.probe):
            return None
        p, o, q = lc.probe.permutation, lc.probe.overfit, lc.power
        return self.finding(
            f"The run flatlined with no other cause; a fresh copy of the encoder trained on {p.rows - p.held_out} of "
            f"its training rows ends at a held-out loss of {num(p.real_loss)} with their labels and {num(p.permuted_loss)} "
            f"with the labels shuffled (constant predictor {num(p.baseline)}), though it learns a label read off the "
            f"same texts ({num(q.real_loss)} vs {num(q.baseline)}) and overfits one batch in {o.reached_at} steps: "
            "the labels may not go with their texts.",
            confidence=0.6,
            evidence={"held_out_loss_real": rnd(p.real_loss), "held_out_loss_permuted": rnd(p.permuted_loss),
                      "constant_baseline": rnd(p.baseline), "held_out_rows": p.held_out, "steps": p.steps,
                      "overfit_steps": o.reached_at, "token_label_loss": rnd(q.real_loss),
                      "token_label_baseline": rnd(q.baseline), "checkpoint": lc.checkpoint,
                      "control_seconds": lc.seconds},
            where=s.loss.label_where if s.loss is not None else None,
            fix="Reorder or filter texts and labels together (one list of pairs); print a few (text, label) pairs "
                "right before training.")
