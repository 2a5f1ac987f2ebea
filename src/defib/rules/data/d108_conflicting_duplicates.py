"""D108: the same text appears with different labels."""

from __future__ import annotations

from defib.signals.check import CheckSignals
from defib.rules.base import Finding, Rule, Severity, register


@register
class ConflictingDuplicates(Rule):
    """Identical texts (or text pairs) carry different labels.

    What it detects:
        Rows whose text, or text pair, is exactly the same as another row's
        while their labels disagree (for regression: differ by more than half
        the targets' standard deviation). Counted on a keyed sample of hashes,
        so memory stays flat on any number of rows.

    Why it flattens predictions:
        For a text that appears with several labels, the loss is lowest at
        their average: the model is taught to hedge. A few such rows are
        ordinary label noise; many of them mean labels that do not belong to
        their texts (a shuffled or misjoined label column), and a model fed
        labels that do not depend on the text can only predict the average.
        The cause code is ``data.label_misalignment``, the family this belongs to.

    Example:
        A review scraped twice, labelled "fresh" once and "rotten" once; or
        ``df["label"] = other_df["label"]`` after a sort that changed the order.

    Fix:
        Deduplicate (keep the majority label, or drop disagreeing groups):
        ``df.groupby("text")["label"].agg(lambda s: s.mode()[0])``; check the
        join that attached the labels.
    """

    code = "D108"
    cause = "data.label_misalignment"
    title = "The same text appears with different labels"
    severity = Severity.WARNING
    needs = ("duplicates", "labels")
    stage = "check"

    min_share = 0.01     # share of rows in disagreeing groups; below this it is ordinary label noise

    def check(self, s: CheckSignals) -> Finding | None:
        d = s.duplicates
        share = d.conflicting_rows / s.rows if s.rows else 0.0
        if share < self.min_share or not d.conflicting_groups:
            return None
        pairs = ", ".join(f"row {r}: {lab!r}" for r, lab in zip(d.examples[:3], d.example_labels[:3]))
        return self.finding(
            f"{d.conflicting_rows:,} rows ({share:.1%}) repeat a text whose copies carry different labels, in "
            f"{d.conflicting_groups:,} groups (e.g. {pairs}).",
            confidence=0.6,
            evidence={"conflicting_rows": d.conflicting_rows, "conflicting_groups": d.conflicting_groups,
                      "duplicate_rows": d.duplicate_rows, "share": round(share, 4), "example_rows": d.examples,
                      "example_labels": d.example_labels},
            fix='df = df.groupby("text", as_index=False)["label"].agg(lambda s: s.mode()[0])  # one label per text')
