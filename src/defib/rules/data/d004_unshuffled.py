"""D004: training batches ordered or grouped by label."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class UnshuffledBatches(Rule):
    """Consecutive batches hold similar labels: the data is not shuffled.

    What it detects:
        The mean within-batch variance of the targets, against their overall
        variance, and the lag-1 autocorrelation of batch means. Under random
        batching the ratio is about (B-1)/B and the autocorrelation about 0;
        sorted or grouped data gives a ratio near 0 and an autocorrelation
        near 1. The DataLoader's sampler is reported when one was seen.

    Why it flattens predictions:
        Each step sees targets from one narrow range, so the optimizer mostly
        tracks the bias of the current range: predictions follow the most
        recent labels and hardly depend on the input. At the end of an epoch
        the model predicts whatever the last labels were, for everything.

    Example:
        ``df = df.sort_values("score"); DataLoader(ds, batch_size=16)``

    Fix:
        ``DataLoader(ds, batch_size=16, shuffle=True)`` (or a random sampler);
        shuffle again every epoch.
    """

    code = "D004"
    cause = "data.unshuffled"
    title = "Training order sorted or grouped by label"
    severity = Severity.ERROR
    needs = ("data",)

    max_var_ratio = 0.5     # within-batch variance / overall variance below this: batches are homogeneous
    min_autocorr = 0.5      # lag-1 autocorrelation of batch means above this: consecutive batches alike
    min_one_label = 64      # rows of a single label from an in-order loader before calling it grouping

    def check(self, s: Signals) -> Finding | None:
        d = s.data
        p = s.preds
        one_label = p is not None and p.n_seen >= self.min_one_label and (
            len(p.label_counts) == 1 if p.task == "classification" else p.target_std == 0)
        if d.shuffle is False and one_label:
            return self.finding(
                f"Every label seen so far ({p.n_seen} rows) is the same while the DataLoader reads in order "
                f"({d.sampler}): the data is grouped by label, so each stretch of training sees one class.",
                confidence=0.9, where=d.loader_where,
                evidence={"sampler": d.sampler, "rows_seen": p.n_seen, "label_counts": p.label_counts},
                fix="DataLoader(train_set, batch_size=..., shuffle=True)")
        ratio, ac = d.within_batch_var_ratio, d.batch_mean_autocorr
        if ratio is None:
            return None
        if ratio >= self.max_var_ratio or ac is None or ac < self.min_autocorr:
            return None
        sampler = f" The DataLoader uses {d.sampler}." if d.sampler else ""
        return self.finding(
            f"Targets vary {1 / max(ratio, 1e-6):.0f}x less within a batch than overall (variance ratio {ratio:.3f}, "
            f"random batches give ~0.9) and consecutive batch means correlate at {ac:.2f}.{sampler}",
            confidence=0.9 if d.shuffle is False else 0.8,
            evidence={"within_batch_var_ratio": round(ratio, 4), "batch_mean_autocorr": round(ac, 4),
                      "sampler": d.sampler, "batches": d.batches},
            where=d.loader_where,
            fix="DataLoader(train_set, batch_size=..., shuffle=True)")
