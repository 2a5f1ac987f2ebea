"""The typed measurements of a data check (``defib check``), handed from the preflight to the check rules.

The preflight (:mod:`defib.evidence.preflight`) streams the data once and
fills these; the check-stage rules (``rules/data/d1xx_*.py``) only read them.
As in :mod:`defib.signals.run`, a part left ``None`` was not measured (no labels
column, no model config), and a rule that needs it is skipped and reported.
Row numbers are 1-based data rows (the header is not counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TokenSignals:
    """The texts as the model's tokenizer turns them into ids, before and after truncation."""

    tokenizer: str                            # the tokenizer's class and where it came from
    algorithm: str | None                     # WordPiece | BPE | Unigram | WordLevel (the tokenizer's model)
    lowercases: bool | None                   # its normalizer lowercases the text
    vocab_size: int                           # len(tokenizer), added tokens included
    max_length: int
    max_length_source: str                    # "--max-length", "the tokenizer's model_max_length", ...
    pair: bool                                # two text columns encoded as a pair
    rows: int = 0
    tokens: int = 0                           # tokens of every row before truncation, special tokens included
    length_counts: list[int] = field(default_factory=list)  # rows per token length (last cell: that length or more)
    rows_truncated: int = 0                   # rows longer than max_length
    tokens_cut: int = 0                       # tokens dropped by truncation, over all rows
    colliding_rows: int = 0                   # truncated rows whose ids equal a different text's (estimate)
    colliding_texts: int = 0                  # distinct texts among them (estimate)
    collision_examples: list[int] = field(default_factory=list)  # rows of one such group
    unk_id: int | None = None
    unk_tokens: int = 0
    rows_with_unk: int = 0
    unk_examples: list[int] = field(default_factory=list)
    max_id: int = -1
    ids_out_of_vocab: int = 0                 # ids at or above the model's vocab_size
    specials_missing: list[str] = field(default_factory=list)    # declared (CLS/SEP or BOS/EOS) but not added by the tokenizer
    vocab_upper_share: float | None = None    # share of vocabulary entries with an uppercase letter
    text_upper_share: float | None = None     # share of (sampled) texts with an uppercase letter
    empty_rows: int = 0                       # texts that are empty or whitespace only (null counts as empty)
    empty_examples: list[int] = field(default_factory=list)

    def length_quantile(self, q: float) -> int:
        """The token length (before truncation) that a share ``q`` of the rows do not exceed."""
        total, seen = sum(self.length_counts), 0
        for length, n in enumerate(self.length_counts):
            seen += n
            if total and seen >= q * total:
                return length
        return len(self.length_counts) - 1


@dataclass
class ModelConfigSignals:
    """The model's config, as far as a data check needs it (no weights are loaded)."""

    path: str
    model_type: str | None = None
    vocab_size: int | None = None
    max_positions: int | None = None          # tokens a row may hold (RoBERTa's 514 embeddings hold 512)
    hidden_size: int | None = None
    num_labels: int | None = None             # only when the config names its labels (id2label)


@dataclass
class OrderSignals:
    """Are labels in file order more alike than a random order would make them? (a permutation test's normal form)"""

    statistic: str                            # "same-neighbour share" (classes) | "lag-1 autocorrelation" (numbers)
    observed: float
    expected: float                           # its mean under a random order
    z: float
    p_value: float                            # one-sided: labels grouped, not merely uneven
    effect: float                             # 0 for random order, 1 for fully grouped or sorted


@dataclass
class LabelSignals:
    """The label column, streamed: types, counts, moments, a sample for the histogram."""

    column: str
    kind: str                                 # number | text | bool | list (the values as stored)
    rows: int = 0
    counts: dict[Any, int] | None = None      # value -> rows; None when there are too many distinct values
    float_written: bool = False               # class-like numbers stored or written as floats ("1.0")
    spellings: dict[str, list[str]] = field(default_factory=dict)  # number -> distinct spellings, when several
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    integral: bool = True                     # every numeric value is a whole number
    sample: list[float] = field(default_factory=list)   # uniform sample of numeric values (for the histogram)
    multihot_width: int | None = None         # list labels of one fixed length (multi-hot vectors)
    multihot_values: list[float] = field(default_factory=list)  # distinct values inside the multi-hot vectors
    # token classification (a list of tags per row, one per token): ``counts`` count tags, not rows
    tags: int | None = None                   # tags counted over every row; None: the labels are not per token
    misaligned_rows: int = 0                  # rows whose tag list is not as long as their token list
    misaligned_examples: list[dict[str, int]] = field(default_factory=list)  # {row, tokens, tags} of the first few


@dataclass
class DuplicateSignals:
    """Rows whose text (or text pair) repeats, and those among them whose labels disagree."""

    distinct_texts: int = 0                   # distinct texts (or pairs) in the data (estimate)
    duplicate_rows: int = 0                   # rows whose text appeared before
    conflicting_rows: int = 0                 # rows in a group of equal texts with disagreeing labels (estimate)
    conflicting_groups: int = 0
    examples: list[int] = field(default_factory=list)   # rows of one conflicting group
    example_labels: list[Any] = field(default_factory=list)


@dataclass
class CheckSignals:
    """Everything one data check measured."""

    source: str
    rows: int = 0
    task: str = "unknown"                     # regression | classification | multilabel | token_classification | unknown
    task_inferred: bool = True
    task_reason: str = ""
    text_columns: list[str] = field(default_factory=list)
    label_column: str | None = None
    tokens: TokenSignals | None = None
    model: ModelConfigSignals | None = None
    labels: LabelSignals | None = None
    order: OrderSignals | None = None
    duplicates: DuplicateSignals | None = None
    step: int = 0                             # the engine's clock: a data check has no training steps
    internal_errors: list[str] = field(default_factory=list)
