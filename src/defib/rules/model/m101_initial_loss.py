"""M101 (probe): the untouched model's loss is far above what an uninformed head scores."""

from __future__ import annotations

import math

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num, rnd
from defib.signals.run import Signals


@register
class InitialLossTooHigh(Rule):
    """Before any training, the loss is several times ln K (classification) or mean(y²) (regression).

    What it detects:
        ``defib probe`` computes the loss of the model as it stands on the
        sample. A freshly initialised head gives near-zero outputs: uniform
        class probabilities, whose cross-entropy is ln K, or predictions near
        0, whose MSE is mean(y²). A loss ``max_ratio`` times that reference,
        or a non-finite one, means the outputs start large: the head's
        weights are uninitialised (``torch.empty``) or badly scaled.

    Why it flattens predictions:
        Huge logits saturate the softmax: the gradient through it vanishes
        and the optimizer spends its steps shrinking the head instead of
        learning, usually into predicting one class or the mean. NaN or inf
        outputs poison every update.

    Example:
        ``self.head.weight = nn.Parameter(torch.empty(1, 384))`` or
        ``nn.init.normal_(self.head.weight, std=1.0)`` on a 384-wide input.

    Fix:
        ``nn.init.normal_(head.weight, std=0.02); nn.init.zeros_(head.bias)``
        (BERT's own init), or build the head with ``nn.Linear`` and leave its
        default init alone.
    """

    code = "M101"
    cause = "model.bad_head_init"
    title = "Initial loss far above an uninformed head's"
    severity = Severity.ERROR
    stage = "probe"
    needs = ("probe", "probe.initial")

    max_ratio = 3.0   # initial loss / (ln K or mean(y^2)) above this: the outputs start far too large

    def check(self, s: Signals) -> Finding | None:
        i = s.probe.initial
        finite = math.isfinite(i.loss) and math.isfinite(i.output_absmax)
        if finite and i.loss <= self.max_ratio * i.reference:
            return None
        ref = "ln K" if i.n_classes else "mean(y²)"
        return self.finding(
            f"Before training, the loss on the sample is {num(i.loss)}, {num(i.loss / i.reference if finite and i.reference else None)}x "
            f"{ref} = {num(i.reference)} that a fresh head would give; the outputs reach |{num(i.output_absmax)}|.",
            confidence=0.95 if not finite else min(0.9, 0.6 + 0.05 * i.loss / max(i.reference, 1e-12)),
            evidence={"initial_loss": rnd(i.loss), "reference": rnd(i.reference), "reference_kind": ref,
                      "constant_baseline": rnd(i.baseline), "output_absmax": rnd(i.output_absmax),
                      "output_std": rnd(i.output_std)},
            fix="nn.init.normal_(head.weight, std=0.02); nn.init.zeros_(head.bias)")
