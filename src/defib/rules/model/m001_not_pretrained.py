"""M001: the encoder was never loaded from pretrained weights (or was re-initialised)."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import recent
from defib.signals import Signals


@register
class NotPretrained(Rule):
    """The encoder's weights are at their random initialisation.

    What it detects:
        The encoder's LayerNorms: a pretrained checkpoint never has every gain
        exactly 1 and every bias exactly 0, a freshly constructed or
        re-initialised model always does. Also reported: whether
        ``from_pretrained`` was called, the spread of the [CLS] vectors across
        inputs (pretrained MiniLM: ~0.7; random init: ~0.05), and the user's
        ``nn.init`` calls on encoder weights.

    Why it flattens predictions:
        A random BERT maps every text to nearly the same [CLS] vector, and
        the few thousand steps of a fine-tuning run cannot teach it language:
        the head can only fit the mean.

    Example:
        ``model = AutoModel.from_config(AutoConfig.from_pretrained(path))``;
        or ``model.apply(init_weights)`` over the whole model after loading.

    Fix:
        ``AutoModel.from_pretrained(path)``; initialise only the new head's
        modules (``model.head.apply(init_weights)``).
    """

    code = "M001"
    cause = "model.not_pretrained"
    title = "Encoder randomly initialised instead of pretrained"
    severity = Severity.ERROR
    needs = ("model", "model.layernorm_at_init")

    min_default_share = 0.9   # share of encoder LayerNorms exactly at (1, 0)

    def check(self, s: Signals) -> Finding | None:
        m = s.model
        if m.layernorm_at_init < self.min_default_share:
            return None
        cls = recent(m.cls_spread, 3)
        encoder_inits = {n: w for n, w in m.init_where.items() if n not in m.head_params}
        where = next(iter(encoder_inits.values()), None) or m.built_where
        how = ("the weights were re-initialised after loading" if m.pretrained_loaded
               else "the model was built without from_pretrained")
        return self.finding(
            f"{m.layernorm_at_init:.0%} of the encoder's LayerNorms are exactly at their initial values (gain 1, "
            f"bias 0): {how}"
            + (f"; [CLS] vectors of different inputs differ by only {cls[-1]:.2f} of their size." if cls else "."),
            confidence=0.95,
            evidence={"layernorm_at_init": m.layernorm_at_init, "from_pretrained_seen": m.pretrained_loaded,
                      "cls_spread": cls[-1] if cls else None, "user_init_calls": len(encoder_inits)},
            where=where,
            fix="model = AutoModel.from_pretrained(path)  # and initialise only the new head")
