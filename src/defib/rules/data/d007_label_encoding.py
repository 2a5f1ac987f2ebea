"""D007: labels encoded in a way the head and loss cannot use."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals



@register
class LabelEncoding(Rule):
    """Class labels do not fit the head: out of range, 1-based, or not 0/1 for BCE.

    What it detects:
        For cross-entropy: class ids below 0 (other than the ignore index) or
        at/above the number of logits, and 1-based ids (class 0 never appears
        while the top id is the last logit). For BCE: targets outside [0, 1].

    Why it flattens predictions:
        Out-of-range ids crash the loss (or, on some devices, silently read
        garbage); 1-based ids leave one logit that is never a target and shift
        every class by one, so the head learns a wrong mapping and leans on
        the prior. BCE with class ids as targets asks for probabilities above
        1, which the model can only approach by saturating every output the
        same way.

    Example:
        ``labels = df["stars"]  # 1..5`` with ``num_labels=5``.

    Fix:
        Map labels to ``0..K-1`` (``label2id``), set ``num_labels=K``; for
        BCE, targets must be 0/1 (multi-hot) floats.
    """

    code = "D007"
    cause = "data.label_encoding"
    title = "Labels encoded wrongly for the head and loss"
    severity = Severity.ERROR
    needs = ("loss", "preds")

    min_labels = 32   # labels seen before calling 1-based ids a pattern

    def check(self, s: Signals) -> Finding | None:
        ls, p = s.loss, s.preds
        if ls.family == "classification" and p.label_counts and p.n_classes:
            ids = [k for k in p.label_counts if k != thresholds.IGNORE_INDEX]
            lo, hi, k = min(ids, default=0), max(ids, default=0), p.n_classes
            if lo < 0 or hi >= k:
                return self.finding(
                    f"Class ids range over {lo}..{hi} but the head has {k} logits (valid ids 0..{k - 1})"
                    + (f"; the loss failed: {ls.failed}" if ls.failed else "."),
                    confidence=0.95, where=ls.label_where or ls.where,
                    evidence={"label_min": lo, "label_max": hi, "num_logits": k, "label_counts": p.label_counts},
                    fix=f"labels = labels - {lo}  # or build the head with num_labels={hi - lo + 1}")
            if lo == 1 and hi == k - 1 and k > 2 and sum(p.label_counts.values()) >= self.min_labels:
                return self.finding(
                    f"Labels use ids 1..{hi} and never 0 while the head has {k} logits: they look 1-based.",
                    confidence=0.75, severity=Severity.WARNING, where=ls.label_where or ls.where,
                    evidence={"label_min": lo, "label_max": hi, "num_logits": k},
                    fix="labels = labels - 1; and num_labels = number of classes")
        # continuous targets are not class ids: scores over one output (M003) or several (L002)
        if ls.family == "multilabel" and p.target_integer and p.target_min is not None \
                and (p.target_min < 0 or p.target_max > 1):
            return self.finding(
                f"{ls.fn} needs targets in [0, 1] but they range over {p.target_min:.3g}..{p.target_max:.3g}.",
                confidence=0.9, where=ls.label_where or ls.where,
                evidence={"target_min": p.target_min, "target_max": p.target_max},
                fix="Use 0/1 (multi-hot) float targets for BCE, or cross-entropy with class ids.")
        return None
