"""O005: parameters that receive gradients are in no optimizer."""

from __future__ import annotations

from defib.evidence.params import group_of
from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class ParamsNotInOptimizer(Rule):
    """Trainable parameters get gradients, but the optimizer does not hold them.

    What it detects:
        Parameters of the watched model whose ``.grad`` is set at step time
        but which are in none of the stepping optimizer's parameter groups.

    Why it flattens predictions:
        Those parameters never change. When they are the head (the optimizer
        was built on ``model.bert.parameters()``, or before the head was
        replaced), the model's output is a fixed random projection of the
        encoder: nearly constant, whatever the encoder learns.

    Example:
        ``opt = AdamW(model.bert.parameters())`` with a new ``model.head``;
        or ``opt = AdamW(model.parameters())`` then
        ``model.classifier = nn.Linear(...)``.

    Fix:
        Build the optimizer after the model is final, on
        ``model.parameters()`` (or list every part's parameters).
    """

    code = "O005"
    cause = "optim.missing_params"
    title = "Trainable parameters missing from the optimizer"
    severity = Severity.ERROR
    needs = ("optim",)

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        missing = o.not_in_optimizer
        if s.step < 1 or not missing:
            return None
        groups = sorted({group_of(n) for n in missing})
        return self.finding(
            f"{len(missing)} parameter tensors get gradients but are in no optimizer, so they never change "
            f"({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}; groups: {', '.join(groups)}).",
            confidence=0.95 if "head" in groups else 0.8,
            severity=Severity.ERROR if "head" in groups else Severity.WARNING,
            evidence={"missing": missing[:20], "count": len(missing), "groups": groups},
            where=o.where,
            fix="optimizer = AdamW(model.parameters(), lr=...)  # after the head is attached")
