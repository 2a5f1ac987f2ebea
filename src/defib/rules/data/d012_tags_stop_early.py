"""D012: token labels that stop before the row's word pieces do: one tag per word laid on the pieces."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.measures import collapsed, not_learning
from defib.signals.run import Signals


@register
class TagsStopEarly(Rule):
    """A token loss's labels form one unbroken run from the start of each row and stop while its pieces go on.

    What it detects:
        On sampled steps, each row of a token-level loss's targets is read
        against its attention mask, between the special tokens. Whatever
        the alignment (each word's first piece labelled and its later pieces
        -100, or every piece labelled), the pieces left unlabelled are the
        later pieces of words, scattered through the row. A row whose
        labelled pieces are one unbroken run from its start, with every
        unlabelled piece after them, is what one tag per *word* laid on the
        word pieces gives (``[-100] + tags + [-100]``, padded with -100):
        the tags end where the words would end if no word were split.
        Reported when 9 in 10 of at least 16 such rows look like that; with
        first-piece labels it happens only to rows in which the last word
        alone is split.

    Why it flattens predictions:
        From the first word split into several pieces on, every tag sits on
        the wrong piece: an entity's tag lands on the piece of another word.
        What is left to learn is the tag prior, so every token is tagged O.

    Example:
        ``labels = [-100] + tags + [-100]`` after
        ``tokenizer(words, is_split_into_words=True)``.

    Fix:
        Align the tags with ``enc.word_ids()``: the tag of word ``w`` on its
        first piece, -100 on the special tokens and later pieces (the
        transformers token-classification example's
        ``tokenize_and_align_labels``).
    """

    code = "D012"
    cause = "data.label_misalignment"
    title = "Token labels stop before the word pieces do"
    severity = Severity.ERROR
    needs = ("data", "loss")

    min_rows = 16      # rows with both labelled and unlabelled pieces: a pattern, not a few short rows
    min_share = 0.9    # of them, rows whose labels stop early; first-piece labels give this only when the
    #                    last word alone is split

    def check(self, s: Signals) -> Finding | None:
        d = s.data
        rows, stop = d.token_rows_partly_labelled, d.token_rows_labels_stop
        if rows < self.min_rows or stop < self.min_share * rows:
            return None
        harm = collapsed(s) or not_learning(s)
        share = stop / rows
        return self.finding(
            f"In {stop} of the {rows} rows ({share:.0%}) that have unlabelled word pieces, the labels run unbroken "
            "from the first piece and stop while the pieces go on: one tag per word was laid on the word "
            "pieces, so from the first word split into several pieces every tag sits on the wrong piece.",
            confidence=0.85, severity=Severity.ERROR if harm else Severity.WARNING,
            where=d.word_split_where or d.collate_where or (s.loss.label_where if s.loss else None),
            evidence={"rows_partly_labelled": rows, "rows_labels_stop_early": stop, "share": round(share, 4)},
            fix="Align the tags with the tokenizer's word_ids(): each word's tag on its first piece, -100 on the "
                "special tokens and the later pieces (or the word's tag on every piece).")
