"""M004: the sentence vector is taken from a place that ignores the input."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import recent
from defib.signals.run import Signals


@register
class PoolingIgnoresInput(Rule):
    """The vectors entering the head are nearly identical while the encoder's token vectors differ.

    What it detects:
        The relative spread across a batch of the vectors the head receives,
        against the spread of the encoder's token vectors in the same steps.
        An encoder that tells inputs apart (token spread ~1) feeding a head
        whose inputs are all alike (spread < 5% of that) is pooling from the
        wrong place.

    Why it flattens predictions:
        If the head sees the same vector for every text, it must give every
        text the same output. Typical slips: the [CLS] vector of the
        embedding layer (``hidden_states[0][:, 0]``, identical for all
        inputs), a padded position, an index into the wrong axis.

    Example:
        ``pooled = out.hidden_states[0][:, 0]`` instead of
        ``out.last_hidden_state[:, 0]``.

    Where:
        The line that picks the vector; when it reads a list of hidden states
        at an index chosen elsewhere (``hidden_states[self.layer]``, the layer
        a module constant passed to the pooling's constructor), the line that
        chose the layer (:mod:`defib.evidence.layer_origin`).

    Fix:
        ``out.last_hidden_state[:, 0]`` ([CLS]), ``out.pooler_output``, or a
        mean over real tokens: ``(h * m).sum(1) / m.sum(1)`` with
        ``m = attention_mask.unsqueeze(-1)``.
    """

    code = "M004"
    cause = "model.pooling"
    title = "Sentence representation taken from a place that ignores the input"
    severity = Severity.ERROR
    needs = ("model",)

    max_ratio = 0.05  # head-input spread / token spread below this: the head sees one vector
    min_token_spread = thresholds.MIN_TOKEN_SPREAD  # the tokens must differ for the comparison to mean anything

    def check(self, s: Signals) -> Finding | None:
        m = s.model
        head, tokens = recent(m.head_input_spread, 3), recent(m.token_spread, 3)
        if len(head) < 2 or not tokens:
            return None
        h, t = max(head), sum(tokens) / len(tokens)
        if t < self.min_token_spread or h >= self.max_ratio * t:
            return None
        return self.finding(
            f"The vectors entering the head differ across inputs by {h:.2g} of their size while the encoder's token "
            f"vectors differ by {t:.2f}: the head sees (nearly) the same vector for every text.",
            confidence=0.9, where=m.pool_layer_where or m.head_input_where,
            evidence={"head_input_spread": h, "token_spread": t, "cls_spread": (recent(m.cls_spread, 1) or [None])[0]},
            fix="pooled = outputs.last_hidden_state[:, 0]  # or a masked mean over tokens")
