"""The data check's one pass: stream a data file (or in-memory columns) and measure what the check rules read.

:func:`measure_file` is what ``defib check`` reads a file with;
:func:`measure_data` is the same on Python lists (``defib.check_data``;
``defib train`` calls it before training). Both return the
:class:`~defib.signals.check.CheckSignals` that :mod:`defib.stages.check`
diagnoses. Bad input raises :class:`~defib.evidence.readers.InputError`.

Per batch of rows: the texts go through the fast tokenizer
(:mod:`defib.evidence.preflight.tokens`), the labels through
:mod:`defib.evidence.preflight.labels`, and a hash of each text with its label
into a keyed sample, from which duplicate texts with disagreeing labels are
counted. Rows whose text is a list of tokens (token classification: JSON
Lines, Parquet or a CoNLL file) take their tags through
:mod:`defib.evidence.preflight.tags` instead, against each row's token count.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from defib.evidence.preflight.labels import LabelCounter, check_task, first_true
from defib.evidence.preflight.sampling import KeyedSample, groups
from defib.evidence.preflight.tags import TagCounter, is_list
from defib.evidence.preflight.tokens import TokenCounter, load_model_config, load_tokenizer, pick_max_length
from defib.evidence.readers import InputError, open_table
from defib.evidence.task import infer_task
from defib.signals.check import CheckSignals, DuplicateSignals, LabelSignals
from defib.signals.run import TOKEN_TASK

BATCH_ROWS = 4096          # rows per tokenizer call: large enough for Rust's parallelism, small for memory
CONFLICT_SPREAD = 0.5      # regression: duplicates whose targets differ by more than this many target stds disagree
EXAMPLES = 5               # row numbers kept as examples of one conflicting group

Tick = Callable[[int, float | None], None]   # (rows read, share of the file read when known)


class Preflight:
    """One pass over the rows; :meth:`finish` turns the counters into :class:`CheckSignals`."""

    def __init__(self, *, source: str, text_columns: list[str], label_column: str, model: Any,
                 tokenizer: Any = None, max_length: int | None = None):
        self.model = load_model_config(model) if isinstance(model, (str, os.PathLike)) else None
        tok = load_tokenizer(tokenizer if tokenizer is not None else model)
        length, origin = pick_max_length(tok, self.model, max_length)
        self.source, self.text_columns, self.label_column = source, text_columns, label_column
        self.tokens = TokenCounter(tok, length, origin, pair=len(text_columns) == 2, model=self.model,
                                   source=source, columns=text_columns)
        self.labels: LabelCounter | TagCounter = LabelCounter(label_column, source)
        self.per_token: bool | None = None   # the texts are lists of tokens; known at the first batch
        self.dups = KeyedSample()
        self.rows = 0

    def add(self, texts: pa.Array, pairs: pa.Array | None, labels: pa.Array) -> None:
        self._start(texts, pairs)
        for name, col in zip(self.text_columns, [texts, pairs]):
            if col is not None and not self.per_token and not _is_text(col.type):
                raise InputError(f"{self.source}: column {name!r} holds {col.type} values, not text")
        words = _word_counts(texts, self.text_columns[0], self.source, self.rows + 1) if self.per_token else None
        for start in range(0, len(texts), BATCH_ROWS):
            part = slice(start, start + BATCH_ROWS)
            row0 = self.rows + 1
            t = _plain(texts[part])
            p = _plain(pairs[part]) if pairs is not None else None
            if words is not None:
                label_keys = self.labels.update(labels[part], words[part], row0)
            else:
                label_keys = self.labels.update(labels[part], row0)
            text_keys = self.tokens.update(t, p, row0)
            self.dups.add(text_keys, label_keys, np.arange(row0, row0 + len(t)))
            self.rows += len(t)

    def _start(self, texts: pa.Array, pairs: pa.Array | None) -> None:
        """At the first batch, texts that are lists of tokens make this a token-level check (tags per token)."""
        per_token = is_list(texts.type)
        if self.per_token is None:
            self.per_token = per_token
            if per_token:
                self.labels = TagCounter(self.label_column, self.source)
        elif per_token != self.per_token:
            raise InputError(f"{self.source}: column {self.text_columns[0]!r} holds lists of tokens in some rows "
                             f"and text in others (from row {self.rows + 1})")
        if per_token and pairs is not None:
            raise InputError(f"{self.source}: column {self.text_columns[0]!r} holds lists of tokens (token "
                             f"classification); --text-pair {self.text_columns[1]} cannot pair with them")

    def finish(self, task: str | None) -> CheckSignals:
        lab = self.labels.signals()
        s = CheckSignals(source=self.source, rows=self.rows, text_columns=self.text_columns,
                         label_column=self.label_column, model=self.model, tokens=self.tokens.signals())
        if self.rows == 0:
            return s
        if task:
            check_task(task, lab, self.source)
            s.task, s.task_inferred, s.task_reason = task, False, "given"
        else:
            s.task, s.task_reason = infer_task(lab)
        s.labels = lab
        s.order = None if self.per_token else self.labels.order(s.task)
        s.duplicates = self._duplicates(lab, s.task)
        return s

    def _duplicates(self, lab: LabelSignals, task: str) -> DuplicateSignals:
        text_keys, label_keys, rows = self.dups.arrays()
        starts, sizes = groups(text_keys)
        out = DuplicateSignals()
        if not len(starts):
            return out
        out.distinct_texts = len(starts) * self.dups.scale
        out.duplicate_rows = int((sizes - 1).sum()) * self.dups.scale
        lo, hi = np.minimum.reduceat(label_keys, starts), np.maximum.reduceat(label_keys, starts)
        tol = CONFLICT_SPREAD * (lab.std or 0.0) if task == "regression" else 0.0
        bad = (hi - lo) > tol  # (groups,)
        out.conflicting_groups = int(bad.sum()) * self.dups.scale
        out.conflicting_rows = int(sizes[bad].sum()) * self.dups.scale
        if bad.any():
            g = int(np.flatnonzero(bad)[np.argmin(rows[starts[bad]])])  # the group that starts earliest in the file
            span = slice(int(starts[g]), int(starts[g]) + min(int(sizes[g]), EXAMPLES))
            out.examples = rows[span].tolist()
            if self.per_token:  # a tag sequence's key is a hash: name the distinct sequences A, B, ... instead
                seen: dict[int, str] = {}
                out.example_labels = [seen.setdefault(int(v), f"tag sequence {chr(65 + len(seen))}")
                                      for v in label_keys[span]]
                return out
            names = {code: text for text, code in self.labels.codes.items()} if lab.kind == "text" else {}
            out.example_labels = [names.get(int(v), v) if lab.kind == "text" else _num(v) for v in label_keys[span]]
        return out


# ---------------------------------------------------------------- entry points
def measure_file(path: str | Path, *, text: str, label: str, model: Any, text_pair: str | None = None,
                 tokenizer: Any = None, max_length: int | None = None, task: str | None = None,
                 delimiter: str | None = None, tick: Tick | None = None) -> CheckSignals:
    """Measure a data file (CSV, TSV, JSON Lines, Parquet, or a ``save_to_disk`` folder) for a model.

    ``tick(rows, fraction)`` is called after each batch (for a progress bar).
    """
    columns = [text] + ([text_pair] if text_pair else []) + [label]
    roles = ["--text"] + (["--text-pair"] if text_pair else []) + ["--label"]
    table = open_table(path, columns, delimiter=delimiter, roles=roles, sniff_conll=task == TOKEN_TASK)
    pf = Preflight(source=str(path), text_columns=columns[:-1], label_column=label, model=model,
                   tokenizer=tokenizer, max_length=max_length)
    for batch in table.batches:
        pf.add(batch.column(text), batch.column(text_pair) if text_pair else None, batch.column(label))
        if tick is not None:
            fraction = table.done_fraction() if table.done_fraction else None
            tick(pf.rows, pf.rows / table.total_rows if table.total_rows else fraction)
    if pf.rows == 0:
        raise InputError(f"{path}: no data rows (only a header, or nothing but blank lines)")
    return pf.finish(task)


def measure_data(texts: Sequence[str], labels: Sequence[Any], *, text_pairs: Sequence[str] | None = None,
                 model: Any, max_length: int | None = None, task: str | None = None,
                 tokenizer: Any = None) -> CheckSignals:
    """Measure in-memory columns (numpy arrays, tensors and pandas series are read as lists)."""
    lists = len(texts) > 0 and isinstance(texts[0], (list, tuple))  # token classification: a list of words per row
    texts_arr = _column(texts, "texts", None if lists else pa.string())
    pairs_arr = _column(text_pairs, "text_pairs", pa.string()) if text_pairs is not None else None
    labels_arr = _column(labels, "labels", None)
    for name, arr in (("text_pairs", pairs_arr), ("labels", labels_arr)):
        if arr is not None and len(arr) != len(texts_arr):
            raise InputError(f"check_data: {len(texts_arr)} texts but {len(arr)} {name}")
    pf = Preflight(source="check_data", text_columns=["texts"] + (["text_pairs"] if pairs_arr is not None else []),
                   label_column="labels", model=model, tokenizer=tokenizer, max_length=max_length)
    pf.add(texts_arr, pairs_arr, labels_arr)
    return pf.finish(task)


# ---------------------------------------------------------------- helpers
def _is_text(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
            or (pa.types.is_dictionary(t) and _is_text(t.value_type)))


def _word_counts(texts: pa.Array, column: str, source: str, row0: int) -> np.ndarray:
    """Tokens per row of a column of token lists; a missing list or token, or a token that is not text, is bad input."""
    if texts.null_count:
        raise InputError(f"{source}: row {row0 + first_true(texts.is_null())}, column {column!r} has no tokens (null)")
    flat = pc.list_flatten(texts)
    if len(flat) and not _is_text(flat.type):
        raise InputError(f"{source}: column {column!r} holds lists of {flat.type} values, not words (token ids? "
                         "a token classification file holds the words, tokenized by the model at training time)")
    if flat.null_count:
        parents = pc.list_parent_indices(texts).to_numpy(zero_copy_only=False)
        row = row0 + int(parents[first_true(flat.is_null())])
        raise InputError(f"{source}: row {row}, column {column!r} holds a missing token (null) in its list")
    return pc.list_value_length(texts).to_numpy(zero_copy_only=False)


def _plain(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_null(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _column(values: Iterable[Any] | None, name: str, type_: pa.DataType | None) -> pa.Array:
    if hasattr(values, "tolist") and not isinstance(values, list):
        values = values.tolist()  # numpy arrays, torch tensors, pandas series
    try:
        return pa.array(list(values), type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise InputError(f"check_data: {name} cannot be read as one column ({str(exc).splitlines()[0][:160]})") from None


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)
