"""D001: truncation makes distinct texts identical, or cuts most of the typical row."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class TruncationCollisions(Rule):
    """Truncation makes distinct texts identical inputs, or cuts away much of the typical text.

    What it detects:
        At the tokenizer calls: the share of distinct texts (or text pairs)
        whose ``input_ids`` are identical to another text's, the share of
        rows cut at ``max_length`` (or at the tokenizer's ``model_max_length``,
        which sentence-transformers' ``max_seq_length`` sets), and how much of
        the median row's text the cut dropped. In the batches: rows of
        ``input_ids`` that duplicate another row of the same batch.

    Why it flattens predictions:
        Two texts that reach the model as the same ids must get the same
        prediction. When ``max_length`` keeps only a shared prefix (a template,
        a title, the first sentence of a pair), most inputs look alike and the
        best the model can do is predict the average target for all of them.
        Padding to ``max_length`` with a correct mask is harmless; cutting the
        part of the text that carries the label is not. A cap below the typical
        length cuts most rows even when they stay distinct: the model is
        trained, and later used, on each text's first words only.

    Example:
        ``tokenizer(s1, s2, truncation=True, max_length=8)`` on STS-B pairs:
        the second sentence never survives. ``model.max_seq_length = 8`` on a
        SentenceTransformer: most sentences lose their last words.

    Fix:
        Raise ``max_length`` to cover the texts (look at the token-length
        histogram: ``defib check``), truncate from the side that does not
        carry the signal (``truncation_side``, ``"only_first"`` for pairs),
        or shorten the shared boilerplate.
    """

    code = "D001"
    cause = "data.truncation"
    title = "Inputs truncated: distinct texts look alike, or most of each text is cut"
    severity = Severity.ERROR
    needs = ("data",)

    min_rows = thresholds.MIN_TOKENIZED_ROWS        # tokenized rows (or batch rows) before judging
    warn_collisions = thresholds.COLLISIONS_WARN    # share of distinct texts sharing their ids with another: suspicious
    error_collisions = thresholds.COLLISIONS_ERROR  # ... and certainly a collapse in the making
    # The median row's share of its text cut off. A cap is meant to bound the long tail; when the median row loses
    # anything, most rows are cut, and at a quarter of the text the model no longer sees what a typical row says.
    warn_text_lost = 0.25
    error_text_lost = 0.5  # ... half of it: the typical row is mostly gone
    # share of batch rows duplicating another row (when no tokenizer call was seen)
    batch_duplicates = 0.25

    def check(self, s: Signals) -> Finding | None:
        d = s.data
        if d.tokenizer_rows >= self.min_rows and d.distinct_texts > 0:
            collisions = 1 - d.distinct_encodings / d.distinct_texts
            at_max = d.rows_at_max_length / d.tokenizer_rows
            if collisions >= self.warn_collisions:
                sev = Severity.ERROR if collisions >= self.error_collisions else Severity.WARNING
                return self.finding(
                    f"{collisions:.0%} of {d.distinct_texts} distinct texts tokenize to the same input_ids as another "
                    f"text; {at_max:.0%} of rows are cut at max_length={d.tokenizer_max_length}.",
                    confidence=min(0.95, 0.6 + collisions), severity=sev,
                    evidence={"distinct_texts": d.distinct_texts, "distinct_encodings": d.distinct_encodings,
                              "collision_share": round(collisions, 4), "rows_at_max_length": round(at_max, 4),
                              "max_length": d.tokenizer_max_length},
                    where=d.cap_where or d.tokenizer_where,
                    fix="Raise max_length (e.g. to the 95th percentile of token lengths) or truncate the other side: "
                        "tokenizer(a, b, truncation='only_first', max_length=128)")
        lost = d.text_lost_median
        if d.length_sample_rows >= self.min_rows and lost is not None and lost >= self.warn_text_lost:
            at_max = d.rows_at_max_length / max(d.tokenizer_rows, 1)
            return self.finding(
                f"The median row loses {lost:.0%} of its text to max_length={d.tokenizer_max_length}: "
                f"{at_max:.0%} of rows are cut, so the model learns from their first words only.",
                confidence=min(0.9, 0.5 + lost),
                severity=Severity.ERROR if lost >= self.error_text_lost else Severity.WARNING,
                evidence={"text_lost_median": round(lost, 4), "rows_at_max_length": round(at_max, 4),
                          "rows_measured": d.length_sample_rows, "max_length": d.tokenizer_max_length},
                where=d.cap_where or d.tokenizer_where,
                fix="Raise the cap to cover the texts (the 95th percentile of token lengths: `defib check`): "
                    "max_length= in the tokenizer call, model.max_seq_length for sentence-transformers.")
        if d.tokenizer_rows == 0 and d.batches * 2 >= self.min_rows // 8 and (d.dup_rows_share or 0) >= self.batch_duplicates:
            return self.finding(
                f"On average {d.dup_rows_share:.0%} of the rows in a batch have exactly the same input_ids as another "
                "row of that batch, so the model cannot tell those inputs apart.",
                confidence=0.7, severity=Severity.WARNING,
                evidence={"duplicate_row_share": round(d.dup_rows_share, 4), "batches": d.batches},
                where=d.tokenizer_where,
                fix="Check max_length and truncation in the preprocessing; distinct texts must stay distinct.")
        return None
