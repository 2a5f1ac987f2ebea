"""D111: token classification rows whose tags do not line up with their tokens."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.check import CheckSignals
from defib.signals.run import TOKEN_TASK


@register
class TagsMisalignedInData(Rule):
    """Rows whose list of tags is not as long as their list of tokens.

    What it detects:
        In a token classification file (a list of tokens and a list of tags
        per row, or a CoNLL file), the rows where the two lists differ in
        length, with their row numbers and both lengths.

    Why it flattens predictions:
        A tag list longer or shorter than its tokens no longer says which tag
        belongs to which word: tags already spread over word pieces (with
        -100s), or shifted by a dropped token, pair every later token with a
        neighbour's tag. Code that zips the two lists cuts the longer one
        silently; code that aligns with ``word_ids()`` reads tags past the
        end or never reaches the last ones. Tags that do not follow the
        input leave the tag prior as the best guess: every token "O".

    Example:
        ``{"tokens": ["EU", "rejects", "German", "call"], "ner_tags": [3, 0, -100, 7, 0]}``:
        tags saved after tokenization, one per word piece, next to the words.

    Fix:
        Keep one tag per word in the file, and align the tags to word pieces
        at training time: ``enc = tokenizer(tokens, is_split_into_words=True)``,
        then ``labels = [-100 if w is None else tags[w] for w in enc.word_ids()]``
        (or -100 on all but each word's first piece).
    """

    code = "D111"
    cause = "data.label_misalignment"
    title = "Tags do not line up with their tokens"
    severity = Severity.ERROR
    needs = ("labels",)
    stage = "check"

    error_share = 0.01   # misaligned share of rows at which the tags, not a few bad rows, are the problem

    def check(self, s: CheckSignals) -> Finding | None:
        lab = s.labels
        if s.task != TOKEN_TASK or not lab.misaligned_rows:
            return None
        share = lab.misaligned_rows / max(1, lab.rows)
        shown = ", ".join(f"row {e['row']}: {e['tokens']} tokens, {e['tags']} tags" for e in lab.misaligned_examples[:3])
        return self.finding(
            f"{lab.misaligned_rows:,} of {lab.rows:,} rows ({share:.1%}) have a tag list of a different length "
            f"than their token list ({shown}).",
            confidence=0.9, severity=Severity.ERROR if share >= self.error_share else Severity.WARNING,
            evidence={"misaligned_rows": lab.misaligned_rows, "rows": lab.rows, "share": round(share, 4),
                      "example_rows": [e["row"] for e in lab.misaligned_examples],
                      "examples": lab.misaligned_examples},
            fix="labels = [-100 if w is None else tags[w] for w in tokenizer(tokens, is_split_into_words=True)"
                ".word_ids()]  # one tag per word in the file")
