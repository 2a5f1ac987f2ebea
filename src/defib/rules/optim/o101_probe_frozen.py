"""O101 (probe): the backward pass reaches (almost) no trainable weight."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import rnd
from defib.signals.run import Signals


@register
class FrozenInProbe(Rule):
    """One backward pass finds the head, or nearly all the model, with ``requires_grad=False``.

    What it detects:
        ``defib probe`` runs one forward and backward pass and lists the
        parameters with ``requires_grad=False``. An error when the head is
        frozen or less than ``min_trainable`` of the weights can learn; a
        warning when only the head can (a linear probe: legitimate, but a
        short fine-tuning run on a frozen encoder rarely beats the mean).

    Why it flattens predictions:
        A frozen head keeps its random, small-scale weights: its outputs
        barely vary and never approach the targets. A model with every weight
        frozen stays at its initial, near-constant output.

    Example:
        ``for p in model.parameters(): p.requires_grad = False`` meant for
        ``model.bert.embeddings.parameters()``.

    Fix:
        Freeze only what you mean to, and check
        ``sum(p.numel() for p in model.parameters() if p.requires_grad)``.
    """

    code = "O101"
    cause = "optim.frozen"
    title = "Parameters that must learn are frozen"
    severity = Severity.ERROR
    stage = "probe"
    needs = ("probe", "probe.grads")

    min_trainable = thresholds.MIN_TRAINABLE  # share of the weights that must be trainable

    def check(self, s: Signals) -> Finding | None:
        g = s.probe.grads
        if not g.frozen:
            return None
        head_frozen = [n for n in g.head if n in set(g.frozen)]
        evidence = {"trainable_share": rnd(g.trainable_share, 4), "frozen_tensors": len(g.frozen),
                    "frozen_examples": g.frozen[:5], "head_frozen": head_frozen[:5], "grad_norms": g.norms}
        if g.head and len(head_frozen) == len(g.head):
            return self.finding(
                f"The head ({', '.join(g.head[:2])}) has requires_grad=False: it can never learn; "
                f"{g.trainable_share:.1%} of the weights are trainable.",
                confidence=0.9, evidence=evidence, fix="for p in model.<head>.parameters(): p.requires_grad = True")
        if g.trainable_share >= self.min_trainable:
            return None
        if g.head and not head_frozen:
            return self.finding(
                f"Only the head can learn: {len(g.frozen)} encoder tensors are frozen and get no gradient "
                f"({g.trainable_share * 100:.2g}% of the weights train).",
                confidence=0.5, severity=Severity.WARNING, evidence=evidence,
                fix="for p in model.<encoder>.encoder.layer[-2:].parameters(): p.requires_grad = True")
        return self.finding(
            f"Only {g.trainable_share * 100:.2g}% of the weights can learn ({len(g.frozen)} tensors are frozen).",
            confidence=0.85, evidence=evidence, fix="Unfreeze the encoder's top layers and the head.")
