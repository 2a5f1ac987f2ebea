"""D102: the tokenizer does not belong to the model, or to the text."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register, worst_problem
from defib.signals.check import CheckSignals

# the tokenizer algorithm each model family was pretrained with (tokenizer.json's "model.type")
ALGORITHMS = {"bert": "WordPiece", "distilbert": "WordPiece", "electra": "WordPiece", "mobilebert": "WordPiece",
              "squeezebert": "WordPiece", "funnel": "WordPiece", "layoutlm": "WordPiece", "mpnet": "WordPiece",
              "roberta": "BPE", "longformer": "BPE", "bart": "BPE", "gpt2": "BPE", "deberta": "BPE",
              "modernbert": "BPE", "xlm-roberta": "Unigram", "albert": "Unigram", "deberta-v2": "Unigram",
              "camembert": "Unigram", "t5": "Unigram"}


@register
class TokenizerMismatch(Rule):
    """The tokenizer does not fit the model (or the text): ids out of range, [UNK]s, casing, special tokens.

    What it detects:
        Ids at or above the model's ``vocab_size`` (or a tokenizer with more
        tokens than the model's embedding table); a tokenizer algorithm from
        another model family (WordPiece for a RoBERTa, BPE for a BERT); the
        share of tokens that are ``[UNK]``; special tokens the tokenizer
        declares but does not add (``[CLS]``/``[SEP]``); and casing: a
        lowercasing tokenizer on a cased vocabulary, or cased text through a
        tokenizer that keeps case on an uncased vocabulary.

    Why it flattens predictions:
        A foreign tokenizer maps words to ids that mean other words to the
        model, or to ``[UNK]``: the inputs turn into noise the encoder cannot
        tell apart, and the head falls back to the average label. Ids past the
        embedding table crash on GPU or read garbage. Without ``[CLS]`` the
        pooled vector a classification head reads is a different token in
        every row.

    Example:
        ``AutoTokenizer.from_pretrained("roberta-base")`` feeding
        ``BertModel.from_pretrained("bert-base-uncased")``.

    Fix:
        Load the tokenizer from the same checkpoint as the model:
        ``AutoTokenizer.from_pretrained(model_path)``; keep its casing
        settings (``do_lower_case``) as saved.
    """

    code = "D102"
    cause = "data.tokenizer_mismatch"
    title = "Tokenizer does not belong to the model"
    severity = Severity.ERROR
    needs = ("tokens",)
    stage = "check"

    warn_unk = thresholds.UNK_SHARE_WARN    # share of tokens that are [UNK]
    error_unk = thresholds.UNK_SHARE_ERROR  # ... a share at which whole words vanish in most rows
    cased_vocab = 0.05      # share of vocabulary entries with an uppercase letter above which the vocabulary is cased
    uncased_vocab = 0.005   # ... below which it is uncased
    cased_text = 0.10       # share of texts with an uppercase letter before casing matters

    def check(self, s: CheckSignals) -> Finding | None:
        t, m = s.tokens, s.model
        problems: list[tuple[Severity, str]] = []
        if m and m.vocab_size and (t.ids_out_of_vocab or t.vocab_size > m.vocab_size):
            problems.append((Severity.ERROR, f"the tokenizer has {t.vocab_size:,} tokens and produced ids up to "
                             f"{t.max_id:,} ({t.ids_out_of_vocab:,} ids out of range) but the model's embedding "
                             f"table has {m.vocab_size:,} rows"))
        expected = ALGORITHMS.get(m.model_type) if m and m.model_type else None
        if expected and t.algorithm and t.algorithm != expected:
            problems.append((Severity.ERROR, f"the tokenizer is {t.algorithm} but a {m.model_type} model was "
                             f"pretrained with {expected}"))
        if t.specials_missing:
            problems.append((Severity.ERROR, f"the tokenizer declares {', '.join(t.specials_missing)} but does "
                             "not add them to its encodings"))
        unk = t.unk_tokens / t.tokens if t.tokens else 0.0
        if unk >= self.warn_unk:
            sev = Severity.ERROR if unk >= self.error_unk else Severity.WARNING
            problems.append((sev, f"{unk:.1%} of tokens are [UNK] ({t.rows_with_unk:,} rows, e.g. rows "
                             f"{', '.join(map(str, t.unk_examples[:3]))})"))
        up = t.vocab_upper_share
        if t.lowercases and up is not None and up >= self.cased_vocab:
            problems.append((Severity.WARNING, f"the tokenizer lowercases the text but {up:.0%} of its vocabulary "
                             "is cased, so those entries are never used"))
        if (t.lowercases is False and up is not None and up <= self.uncased_vocab
                and (t.text_upper_share or 0) >= self.cased_text):
            problems.append((Severity.WARNING, f"{t.text_upper_share:.0%} of texts have capitals, the vocabulary "
                             "is uncased and the tokenizer does not lowercase: capitalised words split or become [UNK]"))
        if not problems:
            return None
        worst, message = worst_problem(problems)
        return self.finding(
            message, confidence=0.9 if worst == Severity.ERROR else 0.7, severity=worst,
            evidence={"problems": [msg for _, msg in problems], "tokenizer": t.tokenizer, "algorithm": t.algorithm,
                      "model_type": m.model_type if m else None, "unk_share": round(unk, 5),
                      "tokenizer_vocab": t.vocab_size, "model_vocab": m.vocab_size if m else None,
                      "specials_missing": t.specials_missing, "lowercases": t.lowercases,
                      "vocab_upper_share": round(up, 4) if up is not None else None},
            fix="tokenizer = AutoTokenizer.from_pretrained(model_path)  # the model's own tokenizer, as saved")
