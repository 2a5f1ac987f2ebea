"""O004: the parameters that must learn are frozen."""

from __future__ import annotations

from defib.evidence.params import group_of
from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.measures import collapsed, not_learning
from defib.signals.run import Signals


@register
class FrozenParameters(Rule):
    """The head, or nearly the whole model, has ``requires_grad=False``.

    What it detects:
        Parameters of the watched model with ``requires_grad=False``: the
        share of all weights that can still learn, and whether any of the
        head's parameters can. Freezing the encoder and training the head (a
        linear probe) is a legitimate choice: info only, a warning once the
        predictions have flattened or the loss is no better than the constant
        predictor's after the grace period (the head alone is not learning).

    Why it flattens predictions:
        A freshly initialised head that cannot learn maps every encoder
        output through random weights of small scale: its outputs barely vary
        and never approach the targets. With almost every weight frozen, the
        model stays at its initial, near-constant output.

    Example:
        ``for p in model.parameters(): p.requires_grad = False`` meant for
        ``model.bert.parameters()``.

    Fix:
        Freeze only what you mean to (``model.bert.embeddings``, lower
        layers) and check ``sum(p.numel() for p in model.parameters() if
        p.requires_grad)`` before training.
    """

    code = "O004"
    cause = "optim.frozen"
    title = "Parameters that must learn are frozen"
    severity = Severity.ERROR
    needs = ("optim",)

    min_trainable = thresholds.MIN_TRAINABLE  # share of weights that must be trainable

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        if not o.n_params or not o.frozen:
            return None
        head_frozen = [n for n in o.frozen if group_of(n) == "head"]
        head_total = [n for n in (s.model.head_params if s.model else [])]
        share = o.n_trainable / o.n_params
        evidence = {"trainable_share": round(share, 6), "frozen_params": len(o.frozen),
                    "frozen_examples": o.frozen[:5], "head_frozen": head_frozen[:5]}
        if head_total and len(head_frozen) == len(head_total):
            return self.finding(
                f"Every parameter of the head ({', '.join(head_frozen[:3])}...) has requires_grad=False; "
                f"{share:.1%} of the model's weights can learn.",
                confidence=0.9, evidence=evidence, where=o.frozen_where,
                fix="for p in model.<head>.parameters(): p.requires_grad = True")
        if share < self.min_trainable:
            trainable_head = bool(head_total) and len(head_frozen) < len(head_total)
            stuck = collapsed(s) or not_learning(s)
            if trainable_head:  # a linear probe: a legitimate choice, worth a note only while it learns
                return self.finding(
                    f"The encoder is frozen: only the head trains ({share:.2%} of {o.n_params:,} weights). Fine for a "
                    "linear probe; if predictions stay flat, unfreeze the top encoder layers.",
                    confidence=0.7 if stuck else 0.3, evidence=evidence, where=o.frozen_where,
                    severity=Severity.WARNING if stuck else Severity.INFO,
                    fix="for p in model.<encoder>.encoder.layer[-2:].parameters(): p.requires_grad = True")
            return self.finding(
                f"Only {share:.2%} of the model's {o.n_params:,} weights can learn ({len(o.frozen)} tensors are frozen).",
                confidence=0.85, evidence=evidence, where=o.frozen_where,
                fix="Unfreeze the encoder's top layers and the head; freeze only what you mean to.")
        return None
