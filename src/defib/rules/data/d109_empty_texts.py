"""D109: rows whose text is empty or whitespace only."""

from __future__ import annotations

from defib.signals.check import CheckSignals
from defib.rules.base import Finding, Rule, Severity, register


@register
class EmptyTexts(Rule):
    """Texts that are empty, missing or whitespace only.

    What it detects:
        Rows whose text (either text, for pairs) is empty, null, or only
        whitespace, with the first row numbers.

    Why it flattens predictions:
        Every such row reaches the model as the same input (``[CLS] [SEP]``)
        with whatever label it has, so the model is taught to answer the
        average label for that input; a few rows only add noise, many of them
        (a failed read, a wrong column) pull every prediction towards the
        mean. The finding has no cause code of its own: it is a warning when
        such rows are common, a note when they are few.

    Example:
        ``df["text"] = df["review"].fillna("")`` where half the reviews
        failed to scrape.

    Fix:
        Drop them before training: ``df = df[df["text"].str.strip() != ""]``.
    """

    code = "D109"
    cause = None
    title = "Empty or whitespace-only texts"
    severity = Severity.WARNING
    needs = ("tokens",)
    stage = "check"

    warn_share = 0.01    # share of rows that are empty before it is a warning rather than a note

    def check(self, s: CheckSignals) -> Finding | None:
        t = s.tokens
        if not t.empty_rows or not t.rows:
            return None
        share = t.empty_rows / t.rows
        return self.finding(
            f"{t.empty_rows:,} rows ({share:.1%}) have an empty or whitespace-only text "
            f"(e.g. rows {', '.join(map(str, t.empty_examples[:5]))}).",
            confidence=0.9, severity=Severity.WARNING if share >= self.warn_share else Severity.INFO,
            evidence={"empty_rows": t.empty_rows, "share": round(share, 5), "example_rows": t.empty_examples},
            fix='df = df[df["text"].str.strip() != ""]  # drop rows without text')
