"""M001: the encoder was never loaded from pretrained weights (or was re-initialised)."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import recent
from defib.signals.run import Signals


@register
class NotPretrained(Rule):
    """The encoder's weights are at their random initialisation.

    What it detects:
        The encoder's LayerNorms: a pretrained checkpoint never has every gain
        exactly 1 and every bias exactly 0, a freshly constructed or
        re-initialised model always does. Or the user's own code running
        ``nn.init`` over a large share of the encoder's tensors after loading
        (``model.apply(init_weights)`` meant for the head). Also reported: whether
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

    min_default_share = thresholds.RANDOM_ENCODER_LAYERNORMS  # share of encoder LayerNorms exactly at (1, 0)
    min_user_init = 0.3  # share of encoder tensors the user's own code re-initialised (nn.init.*)

    def check(self, s: Signals) -> Finding | None:
        m = s.model
        cls = recent(m.cls_spread, 3)
        encoder_inits = {n: w for n, w in m.init_where.items() if n not in m.head_params}
        reinit_share = len(encoder_inits) / m.encoder_tensors if m.encoder_tensors else 0.0
        if m.layernorm_at_init < self.min_default_share:
            if reinit_share < self.min_user_init:
                return None
            where = next(iter(encoder_inits.values()))
            return self.finding(
                f"Your code re-initialised {len(encoder_inits)} of the encoder's {m.encoder_tensors} parameter tensors "
                f"with nn.init after they were loaded"
                + (f"; [CLS] vectors of different inputs differ by {cls[-1]:.2f} of their size." if cls else "."),
                confidence=0.9, where=where,
                evidence={"reinitialised_tensors": len(encoder_inits), "encoder_tensors": m.encoder_tensors,
                          "examples": list(encoder_inits)[:5], "cls_spread": cls[-1] if cls else None},
                fix="Initialise only the new head: self.head.apply(self._init_weights)")
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
