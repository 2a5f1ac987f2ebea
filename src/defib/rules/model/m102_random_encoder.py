"""M102 (probe): the encoder's LayerNorms sit exactly at their initial values."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num, rnd
from defib.signals.run import Signals


@register
class RandomEncoder(Rule):
    """The probed model's encoder was never loaded from a checkpoint, or was re-initialised.

    What it detects:
        The share of the encoder's LayerNorms with every gain exactly 1 and
        every bias exactly 0. Pretrained weights never look like that; a model
        built from a config or re-initialised always does. Reported with it:
        how different the last layer's [CLS] vectors and token vectors are
        across the sample's inputs (pretrained MiniLM: [CLS] ~0.7; random:
        ~0.05).

    Why it flattens predictions:
        A random BERT maps every text to nearly the same sentence vector; a
        short fine-tuning run cannot teach it language, so the head can only
        fit the mean.

    Example:
        ``AutoModelForSequenceClassification.from_config(config)``, or
        ``model.apply(init_weights)`` over the whole model after loading.

    Fix:
        ``AutoModelForSequenceClassification.from_pretrained(path)``;
        initialise only the new head.
    """

    code = "M102"
    cause = "model.not_pretrained"
    title = "Encoder randomly initialised instead of pretrained"
    severity = Severity.ERROR
    stage = "probe"
    needs = ("probe", "probe.sensitivity", "probe.sensitivity.layernorm_at_init")

    min_default_share = thresholds.RANDOM_ENCODER_LAYERNORMS  # share of encoder LayerNorms exactly at (1, 0)

    def check(self, s: Signals) -> Finding | None:
        v = s.probe.sensitivity
        if v.layernorm_at_init < self.min_default_share:
            return None
        return self.finding(
            f"{v.layernorm_at_init:.0%} of the encoder's {v.encoder_layernorms} LayerNorms are exactly at their initial "
            f"values (gain 1, bias 0): the encoder is not pretrained; its [CLS] vectors differ across inputs by "
            f"{num(v.cls_spread, 2)} of their size.",
            confidence=0.95,
            evidence={"layernorm_at_init": rnd(v.layernorm_at_init), "encoder_layernorms": v.encoder_layernorms,
                      "cls_spread": rnd(v.cls_spread), "token_spread": rnd(v.token_spread)},
            fix="model = AutoModelForSequenceClassification.from_pretrained(path)")
