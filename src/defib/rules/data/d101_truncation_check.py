"""D101: before training, max_length cuts the texts, or makes distinct texts identical."""

from __future__ import annotations

from defib.signals.check import CheckSignals
from defib.signals.run import TOKEN_TASK
from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register


@register
class TruncationInData(Rule):
    """max_length cuts many rows, or turns distinct texts into identical input_ids.

    What it detects:
        Every row is tokenized without truncation to get its true length,
        then the rows longer than ``max_length`` are tokenized again, truncated
        exactly as ``tokenizer(..., truncation=True, max_length=L)`` would. It
        counts the rows cut, the tokens they lose, and the distinct texts (or
        text pairs) whose truncated ids equal those of a *different* text, as a
        share of all distinct texts.

    Why it flattens predictions:
        Texts that reach the model as the same ids must get the same
        prediction. When the cut keeps only a shared prefix (a template, the
        first sentence of a pair), many rows with different labels look alike,
        and the loss is lowest when the model predicts their average label for
        all of them. Cutting most rows short also throws away the part of the
        text that often carries the label.

    Example:
        STS-B pairs with ``max_length=16``: the second sentence never survives,
        so pairs that share a first sentence become identical inputs.

    Fix:
        Raise ``max_length`` to cover the texts (this finding gives the 95th
        percentile of token lengths), or truncate the side that does not carry
        the signal (``truncation="only_first"`` for pairs).
    """

    code = "D101"
    cause = "data.truncation"
    title = "max_length cuts the texts until distinct ones look alike"
    severity = Severity.ERROR
    needs = ("tokens",)
    stage = "check"

    min_rows = thresholds.MIN_TOKENIZED_ROWS        # rows before judging
    warn_collisions = thresholds.COLLISIONS_WARN    # share of distinct texts whose truncated ids equal another's: suspicious
    error_collisions = thresholds.COLLISIONS_ERROR  # ... and a collapse in the making
    warn_truncated = 0.10                           # share of rows cut at max_length (no collisions): their ends are lost

    def check(self, s: CheckSignals) -> Finding | None:
        t = s.tokens
        if t.rows < self.min_rows:
            return None
        distinct = s.duplicates.distinct_texts if s.duplicates and s.duplicates.distinct_texts else t.rows
        collide = min(1.0, t.colliding_texts / distinct)  # share of distinct texts, as D001 counts at run time
        cut = t.rows_truncated / t.rows
        p95 = t.length_quantile(0.95)
        evidence = {"rows": t.rows, "rows_truncated": t.rows_truncated, "truncated_share": round(cut, 4),
                    "colliding_rows": t.colliding_rows, "colliding_texts": t.colliding_texts,
                    "distinct_texts": distinct, "colliding_share": round(collide, 4),
                    "tokens_cut": t.tokens_cut, "tokens_cut_share": round(t.tokens_cut / max(1, t.tokens), 4),
                    "max_length": t.max_length, "length_p50": t.length_quantile(0.5),
                    "length_p95": p95, "collision_example_rows": t.collision_examples}
        limit = s.model.max_positions if s.model and s.model.max_positions else None
        target = min(p95, limit) if limit else p95
        side = ("tokenizer(a, b, truncation='only_first', max_length=...) keeps the second text whole; or "
                if t.pair else "")
        words = "is_split_into_words=True, " if s.task == TOKEN_TASK else ""  # lengths were counted in word pieces
        fix = f"{side}tokenizer(..., {words}truncation=True, max_length={target})  # covers 95% of rows"
        if collide >= self.warn_collisions:
            example = f" (e.g. rows {', '.join(map(str, t.collision_examples[:3]))})" if t.collision_examples else ""
            return self.finding(
                f"{collide:.0%} of {distinct:,} distinct texts ({t.colliding_rows:,} rows) become the same input_ids "
                f"as a different text once cut at max_length={t.max_length}{example}; {cut:.0%} of rows are longer.",
                confidence=min(0.95, 0.6 + collide), evidence=evidence, fix=fix,
                severity=Severity.ERROR if collide >= self.error_collisions else Severity.WARNING)
        if cut >= self.warn_truncated:
            lost = t.tokens_cut / max(1, t.rows_truncated)
            return self.finding(
                f"{cut:.0%} of rows ({t.rows_truncated:,}) are longer than max_length={t.max_length} and lose "
                f"{lost:.0f} tokens each on average; 95% of rows fit in {p95} tokens.",
                confidence=0.6, severity=Severity.WARNING, evidence=evidence, fix=fix)
        return None
