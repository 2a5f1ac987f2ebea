"""L003: a softmax or sigmoid applied before a loss that applies its own."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals

PROB_PRODUCERS = ("Softmax", "Sigmoid")


@register
class DoubleActivation(Rule):
    """Probabilities are fed to a loss that expects logits.

    What it detects:
        Rows given to cross-entropy that are non-negative and sum to 1
        (softmax outputs), or values given to BCE-with-logits that all lie in
        [0, 1] after a sigmoid; the autograd graph names the activation.

    Why it flattens predictions:
        ``CrossEntropyLoss`` applies log-softmax itself. On probabilities in
        [0, 1] the second softmax can only move each class between e^0 and
        e^1, so the loss barely changes whatever the model does, the
        gradients are tiny, and the model settles on the majority class.

    Example:
        ``probs = torch.softmax(logits, -1); loss = nn.CrossEntropyLoss()(probs, y)``

    Fix:
        Feed raw logits to the loss; apply softmax/sigmoid only for
        reporting, or use ``NLLLoss`` on ``log_softmax`` outputs.
    """

    code = "L003"
    cause = "loss.double_activation"
    title = "Softmax or sigmoid applied before a loss that expects logits"
    severity = Severity.ERROR
    needs = ("loss",)

    min_share = 0.9   # share of inputs that look like probabilities

    def check(self, s: Signals) -> Finding | None:
        ls = s.loss
        producer = next((n for n in ls.producer if n.startswith(PROB_PRODUCERS)), None)
        if ls.fn == "cross_entropy" and (ls.prob_rows_share or 0) >= self.min_share:
            msg = (f"{ls.prob_rows_share:.0%} of the rows fed to cross_entropy are probabilities (>= 0, summing to 1)"
                   + (f", produced by {producer.replace('Backward0', '')}" if producer else "")
                   + "; cross_entropy applies its own softmax.")
            fix = "loss = F.cross_entropy(logits, labels)  # no softmax before the loss"
        elif ls.fn == "binary_cross_entropy_with_logits" and (ls.unit_interval_share or 0) >= 0.999 and producer:
            msg = ("Every value fed to binary_cross_entropy_with_logits lies in [0, 1], after a "
                   f"{producer.replace('Backward0', '')}; the loss applies its own sigmoid.")
            fix = "loss = F.binary_cross_entropy_with_logits(logits, targets)  # no sigmoid before the loss"
        else:
            return None
        return self.finding(msg, confidence=0.9, where=ls.producer_where or ls.where, fix=fix,
                            evidence={"loss": ls.fn, "probability_rows": ls.prob_rows_share,
                                      "unit_interval_share": ls.unit_interval_share, "producer": list(ls.producer)})
