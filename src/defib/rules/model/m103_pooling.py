"""M103 (probe): the head receives the same vector for every input while the tokens differ."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num, rnd
from defib.signals.run import Signals


@register
class PooledVectorIgnoresInput(Rule):
    """The vectors entering the head barely differ across the sample while the encoder's token vectors do.

    What it detects:
        In eval mode, the relative spread across the sample's rows of the
        vectors entering the head's first ``nn.Linear``, against the spread of
        the last encoder layer's token vectors. Token vectors that tell the
        inputs apart (spread >= ``min_token_spread``) and head inputs that do
        not (below ``max_ratio`` of it) mean the pooling reads a place that
        ignores the input. Not reported when the encoder is itself random
        (M102 explains alike vectors then).

    Why it flattens predictions:
        A head that sees one vector for every text gives one output for
        every text.

    Example:
        ``pooled = out.hidden_states[0][:, 0]`` (the embedding layer's [CLS],
        the same for all inputs), or the vector at a padded position.

    Fix:
        ``out.last_hidden_state[:, 0]``, ``out.pooler_output``, or a mean over
        the real tokens: ``(h * m).sum(1) / m.sum(1)`` with
        ``m = attention_mask.unsqueeze(-1)``.
    """

    code = "M103"
    cause = "model.pooling"
    title = "Sentence representation taken from a place that ignores the input"
    severity = Severity.ERROR
    stage = "probe"
    needs = ("probe", "probe.sensitivity", "probe.sensitivity.pooled_spread", "probe.sensitivity.token_spread")

    max_ratio = 0.02  # pooled spread / token spread below this: the head sees one vector
    min_token_spread = thresholds.MIN_TOKEN_SPREAD  # the tokens must differ for the comparison to mean anything
    # at or above this share of LayerNorms at init the encoder is random (M102)
    max_default_layernorms = thresholds.RANDOM_ENCODER_LAYERNORMS

    def check(self, s: Signals) -> Finding | None:
        v = s.probe.sensitivity
        if v.token_spread < self.min_token_spread or v.pooled_spread >= self.max_ratio * v.token_spread:
            return None
        if v.layernorm_at_init is not None and v.layernorm_at_init >= self.max_default_layernorms:
            return None
        return self.finding(
            f"Across {v.rows} inputs, the vectors entering the head differ by {num(v.pooled_spread, 2)} of their size "
            f"while the encoder's token vectors differ by {num(v.token_spread, 2)}: the head sees (nearly) one vector.",
            confidence=0.9,
            evidence={"pooled_spread": rnd(v.pooled_spread), "token_spread": rnd(v.token_spread),
                      "cls_spread": rnd(v.cls_spread), "rows": v.rows},
            fix="pooled = outputs.last_hidden_state[:, 0]  # or a masked mean over tokens")
