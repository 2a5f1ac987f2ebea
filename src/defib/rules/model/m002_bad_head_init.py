"""M002: the head starts with weights that are non-finite or far too large."""

from __future__ import annotations

import math

from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class BadHeadInit(Rule):
    """The head's first linear layer starts non-finite or badly scaled.

    What it detects:
        The head's first ``nn.Linear`` before the first update: non-finite
        values (``torch.empty`` never filled), or a weight scale far above the
        usual one, measured as ``std x sqrt(fan_in)`` (PyTorch's default init
        gives ~0.58, BERT's 0.02-std init ~0.4 for 384 inputs).

    Why it flattens predictions:
        A head whose weights are 20x too large starts with huge, saturated
        outputs: softmax puts all mass on one class for every input, a
        sigmoid or tanh sits at its bound, gradients through it vanish, and
        MSE's first steps throw the encoder around. Non-finite weights make
        every output NaN.

    Example:
        ``nn.init.normal_(self.head.weight, std=1.0)`` or
        ``self.head.weight = nn.Parameter(torch.empty(1, 384))``.

    Fix:
        Keep ``nn.Linear``'s default init, or ``normal_(std=0.02)`` with zero
        bias as BERT does.
    """

    code = "M002"
    cause = "model.bad_head_init"
    title = "Head weights uninitialised or badly scaled"
    severity = Severity.ERROR
    needs = ("model", "model.head_fan_in")

    max_scale = 5.0     # std x sqrt(fan_in) above this: outputs start ~10x larger than the default init's

    def check(self, s: Signals) -> Finding | None:
        m = s.model
        where = next((w for n, w in m.init_where.items() if n in m.head_params), None)
        if m.head_init_nonfinite:
            return self.finding("The head's weights contain NaN or Inf before the first update.",
                                confidence=0.95, where=where, evidence={"fan_in": m.head_fan_in},
                                fix="nn.init.normal_(head.weight, std=0.02); nn.init.zeros_(head.bias)")
        if m.head_init_std is None:
            return None
        scale = m.head_init_std * math.sqrt(m.head_fan_in)
        if scale < self.max_scale:
            return None
        return self.finding(
            f"The head's first layer starts with weight std {m.head_init_std:.3g} over {m.head_fan_in} inputs "
            f"(std x sqrt(fan_in) = {scale:.1f}; default init ~0.6): outputs start {scale / 0.58:.0f}x too large.",
            confidence=0.85, where=where,
            evidence={"weight_std": m.head_init_std, "weight_absmax": m.head_init_absmax, "fan_in": m.head_fan_in,
                      "scale": round(scale, 3)},
            fix="nn.init.normal_(head.weight, std=0.02); nn.init.zeros_(head.bias)")
