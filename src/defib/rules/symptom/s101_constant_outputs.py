"""S101 (probe): the model gives (nearly) the same output for every input of the sample."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num, rnd
from defib.signals.run import Signals


@register
class ConstantOutputs(Rule):
    """In eval mode, the outputs for different inputs are (nearly) identical.

    What it detects:
        The relative spread of the model's outputs across the sample's rows
        (a robust spread over their size; different inputs of a working model
        give 0.1 and more). Below ``max_spread`` the model answers the same
        thing whatever the text: it has flatlined, before or without training.

    Why it flattens predictions:
        This is the flatline itself, measured on the model at rest. It is a
        symptom: the root cause ranked above it (pooling, a random encoder,
        an ignored input) says why.

    Example:
        Outputs 0.1103, 0.1104, 0.1103 ... for 32 different sentence pairs.

    Fix:
        See the root cause ranked above it.
    """

    code = "S101"
    cause = None
    title = "Outputs constant across inputs"
    severity = Severity.ERROR
    stage = "probe"
    needs = ("probe", "probe.sensitivity")

    max_spread = thresholds.CONSTANT_OUTPUT_SPREAD  # output spread across inputs / output size below this: one answer

    def check(self, s: Signals) -> Finding | None:
        v = s.probe.sensitivity
        if v.output_spread >= self.max_spread:
            return None
        i = s.probe.initial
        return self.finding(
            f"Across {v.rows} different inputs the outputs differ by {num(v.output_spread, 2)} of their size: the model "
            "gives one answer for every text.",
            confidence=0.95,
            evidence={"output_spread": rnd(v.output_spread), "rows": v.rows,
                      "pred_std": rnd(i.output_std) if i else None, "target_std": rnd(i.target_std) if i else None,
                      "loss": rnd(i.loss) if i else None, "baseline_loss": rnd(i.baseline) if i else None},
            fix="A symptom: see the root cause ranked above it.")
