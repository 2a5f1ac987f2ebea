"""D009: the token ids the model receives do not fit its checkpoint (a tokenizer from elsewhere)."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register, worst_problem
from defib.rules.fmt import rnd
from defib.signals.run import Signals


@register
class TokenizerMismatchAtRunTime(Rule):
    """The ids in the training batches say the tokenizer does not belong to the checkpoint.

    What it detects:
        In the token ids the model receives: ids at or beyond its embedding
        table's rows (on CPU the embedding raises ``IndexError``; the ids are
        counted before the crash), the share of tokens that are the
        tokenizer's unknown token, the share of tokens that index embedding
        rows the checkpoint never trained (rows a resize added past the
        ``vocab_size`` saved in its ``config.json``, all-zero rows), and, when
        the checkpoint folder saved its own tokenizer, the share of that
        vocabulary which the tokenizer in use maps to the same ids.

    Why it flattens predictions:
        A foreign vocabulary loads without complaint and yields plausible
        ids, but each id names another word to the embedding table, or the
        unknown token, or a row that was never trained: the encoder sees noise
        that is alike for every text, and the head falls back to the average
        label. Ids past the table crash on CPU and raise a device assert on GPU.

    Example:
        ``AutoTokenizer.from_pretrained("bert-base-cased")`` (or a tokenizer
        retrained on the task's text) feeding a model loaded from
        ``bert-base-uncased``.

    Fix:
        Load the tokenizer from the checkpoint the model comes from:
        ``AutoTokenizer.from_pretrained(model_path)``. A retrained vocabulary
        needs a model pretrained with it, not a resized embedding.
    """

    code = "D009"
    cause = "data.tokenizer_mismatch"
    title = "Tokenizer does not belong to the model"
    severity = Severity.ERROR
    needs = ("data",)

    min_tokens = 100  # real tokens seen before the shares below mean anything (a batch of short sentences)
    warn_unk = thresholds.UNK_SHARE_WARN
    error_unk = thresholds.UNK_SHARE_ERROR
    # Share of tokens read from rows the checkpoint never trained. A few added special tokens (entity
    # markers, a [NEW] token) learn their rows during fine-tuning and stay well under this; at a quarter of
    # the input, the text is mostly vectors that mean nothing yet.
    max_untrained = 0.25
    # Share of the checkpoint's saved vocabulary that the tokenizer in use must map to the same ids. The
    # model's own tokenizer, with or without added tokens, agrees on every saved token; a cased for an
    # uncased vocabulary, or one retrained on other text, agrees on few.
    min_agreement = 0.9

    def check(self, s: Signals) -> Finding | None:
        d = s.data
        problems: list[tuple[Severity, str]] = []
        rows = d.embedding_rows
        beyond = d.ids_beyond_vocab
        top = d.max_id
        if rows is not None and d.tokens_seen == 0 and d.tokenizer_max_id is not None and d.tokenizer_max_id >= rows:
            top = d.tokenizer_max_id  # no batch could be read (a device assert): the tokenizer's own ids say it
        if not beyond and d.raised_ids is not None:  # the forward crashed before its batch could be read
            top, rows = d.raised_ids
        if rows is not None and (beyond or (top is not None and top >= rows)):
            counted = f" ({beyond:,} of {d.tokens_seen:,} tokens)" if beyond else ""
            problems.append((Severity.ERROR, f"the model received ids up to {top:,}{counted} but its embedding "
                             f"table has {rows:,} rows"))
        if d.vocab_agreement is not None and d.vocab_agreement < self.min_agreement:
            problems.append((Severity.ERROR, f"the tokenizer in use gives the same id as the tokenizer saved with "
                             f"the checkpoint to only {d.vocab_agreement:.0%} of its tokens"))
        enough = d.tokens_seen >= self.min_tokens
        unk = d.unk_tokens / d.tokens_seen if d.tokens_seen else 0.0
        if enough and d.unk_token_id is not None and unk >= self.warn_unk:
            sev = Severity.ERROR if unk >= self.error_unk else Severity.WARNING
            problems.append((sev, f"{unk:.1%} of the {d.tokens_seen:,} tokens the model received are the "
                             f"unknown token (id {d.unk_token_id})"))
        untrained = d.untrained_row_tokens / d.tokens_seen if d.tokens_seen else 0.0
        if enough and untrained >= self.max_untrained:
            past = f" (rows past the checkpoint's {d.checkpoint_vocab:,})" if d.checkpoint_vocab and rows and \
                d.checkpoint_vocab < rows else ""
            problems.append((Severity.ERROR, f"{untrained:.0%} of the tokens index embedding rows the checkpoint "
                             f"never trained{past}"))
        if not problems:
            return None
        worst, message = worst_problem(problems)
        return self.finding(
            message, confidence=0.9 if worst == Severity.ERROR else 0.6,
            severity=worst, where=d.tokenizer_load_where or d.tokenizer_where,
            evidence={"problems": [msg for _, msg in problems], "tokens_seen": d.tokens_seen,
                      "unk_share": rnd(unk), "unk_token_id": d.unk_token_id, "max_id": top,
                      "embedding_rows": rows, "ids_beyond_vocab": beyond, "untrained_share": rnd(untrained),
                      "checkpoint_vocab": d.checkpoint_vocab, "vocab_agreement": rnd(d.vocab_agreement),
                      "tokenizer": d.tokenizer_path, "checkpoint": d.checkpoint_path},
            fix="tokenizer = AutoTokenizer.from_pretrained(model_path)  # the model's own tokenizer, as saved")
