"""D103: labels grouped or sorted in file order."""

from __future__ import annotations

from defib.signals.check import CheckSignals
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num


@register
class GroupedLabelsInFile(Rule):
    """Labels are grouped or sorted in file order: a risk for any loader that does not shuffle.

    What it detects:
        A permutation test of the file order. For classes: how often
        neighbouring rows share a label, against the exact mean and variance
        of that count under a random order of the same labels (the runs test
        for k categories). For numbers: the lag-1 autocorrelation of the
        targets in file order (about 0, with standard error 1/sqrt(n), under a
        random order). It fires on a one-sided p-value below ``max_p`` *and* an
        effect of at least ``min_effect`` (0 random, 1 fully grouped), so that
        a large file's tiny, harmless order effects stay silent.

    Why it flattens predictions:
        A loader that reads in file order (``shuffle=False``, a sequential
        sampler, an ``IterableDataset``) then feeds batches from one narrow
        range of labels; the optimizer tracks the current batch's bias, and
        the model ends each epoch predicting whatever labels came last, for
        every input. The file alone cannot say how it will be loaded: this is
        a risk, not a verdict.

    Example:
        A CSV exported sorted by ``score``, or all positive reviews followed by
        all negative ones, read with ``DataLoader(ds, batch_size=32)``.

    Fix:
        ``DataLoader(ds, batch_size=32, shuffle=True)`` (the transformers
        ``Trainer`` shuffles by default), or shuffle the file once:
        ``df.sample(frac=1, random_state=0)``.
    """

    code = "D103"
    cause = "data.unshuffled"
    title = "Labels grouped or sorted in file order"
    severity = Severity.WARNING
    needs = ("order",)
    stage = "check"

    min_rows = 100       # rows before a file order means anything
    max_p = 1e-6         # one-sided p-value of the order statistic under a random order
    min_effect = 0.2     # 0 = random order, 1 = fully grouped: smaller effects do not steer training

    def check(self, s: CheckSignals) -> Finding | None:
        o = s.order
        if s.rows < self.min_rows or o.p_value >= self.max_p or o.effect < self.min_effect:
            return None
        if o.statistic == "lag-1 autocorrelation":
            what = (f"Targets in file order have a lag-1 autocorrelation of {o.observed:.2f} where a random order "
                    f"gives {o.expected:.3f}")
        else:
            what = (f"In file order {o.observed:.0%} of neighbouring rows share a label where a random order "
                    f"gives {o.expected:.0%}")
        return self.finding(
            f"{what} (z = {o.z:.1f}, p {_p(o.p_value)}): the file is grouped or sorted by label, so a loader "
            "that does not shuffle trains on one range of labels at a time.",
            confidence=min(0.9, 0.5 + o.effect / 2),
            evidence={"statistic": o.statistic, "observed": round(o.observed, 4), "expected": round(o.expected, 4),
                      "z": round(o.z, 2), "p_value": o.p_value, "effect": round(o.effect, 4), "rows": s.rows},
            fix="DataLoader(train_set, batch_size=32, shuffle=True)  # or df.sample(frac=1, random_state=0) once")


def _p(p: float) -> str:
    return "< 1e-300" if p < 1e-300 else f"= {num(p, 2)}"
