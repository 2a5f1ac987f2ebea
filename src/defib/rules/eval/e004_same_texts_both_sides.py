"""E004: after training on pairs, the evaluation encodes the same texts for both sides of its pairs."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class SameTextsBothSides(Rule):
    """The script's evaluation encodes one column of its pairs twice, so every pair is a text with itself.

    What it detects:
        In a watched run whose training loss compared the embeddings of two
        or more columns (a bi-encoder trained on pairs), two consecutive
        ``model.encode(...)`` calls after training on the very same list of
        texts (at least two distinct ones).

    Why it flattens predictions:
        A pair evaluation encodes the first texts, then the second, and scores
        each pair by the similarity of the two embeddings. When both calls
        receive the same column, every pair compares a text with itself: every
        cosine is 1.0 whatever the model learned, and the correlation with the
        gold scores is undefined or zero although training was healthy.

    Example:
        ``u = model.encode(left)`` followed by ``v = model.encode(left)`` where
        the second call meant ``right``.

    Fix:
        Encode the second column for the second side (``model.encode(right)``).
    """

    code = "E004"
    cause = "eval.inputs"
    title = "Evaluation encodes the same texts for both sides of its pairs"
    severity = Severity.ERROR
    needs = ("model",)

    def check(self, s: Signals) -> Finding | None:
        m = s.model
        if m.eval_same_texts is None:
            return None
        return self.finding(
            f"After {s.step} training steps on pairs, two consecutive encode() calls received the same "
            f"{m.eval_same_texts} texts: an evaluation that pairs their embeddings compares each text with itself "
            "(every cosine 1.0), whatever the model learned.",
            confidence=0.7, evidence={"texts": m.eval_same_texts, "steps": s.step},
            where=m.eval_same_texts_where,
            fix="Encode the other column of the pairs for the second side (model.encode(right)).")
