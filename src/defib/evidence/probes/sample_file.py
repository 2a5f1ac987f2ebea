"""Rows for ``defib probe``: a sample of the user's data file, or a built-in sample.

The file is read by the one reader (:func:`defib.evidence.readers.load_columns`),
so the probe takes every format ``defib check`` takes, and reading errors are
the same one-line :class:`~defib.evidence.readers.InputError`. Without
``--task``, the task is the one ``defib check`` infers from the same labels
(:func:`defib.evidence.task.infer_task_of`), over every row read, not only the
few dozen probed.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from defib.evidence.probes.data import ProbeInputError
from defib.evidence.readers import InputError, load_columns
from defib.evidence.task import infer_task_of

MAX_READ = 20_000  # rows read from a file before sampling (the probe uses a few dozen)


def read_rows(path: Path, text: str, label: str, text_pair: str | None = None, *, task: str | None = None,
              rows: int = 64, seed: int = 0) -> tuple[list[Any], list[Any], str]:
    """(texts or (text, text) pairs, labels as the probe trains on them, task) for ``rows`` rows drawn at random."""
    columns = [text] + ([text_pair] if text_pair else []) + [label]
    roles = ["--text"] + (["--text-pair"] if text_pair else []) + ["--label"]
    cols = load_columns(path, columns, roles=roles, max_rows=MAX_READ)
    n = len(cols[label])
    if not n:
        raise InputError(f"{path}: no data rows")
    labels, task = parse_labels(cols[label], task, str(path), label)
    picked = random.Random(seed).sample(range(n), min(rows, n))
    texts = [(str(cols[text][i]), str(cols[text_pair][i])) if text_pair else str(cols[text][i]) for i in picked]
    return texts, [labels[i] for i in picked], task


def parse_labels(raw: list[Any], task: str | None, source: str,
                 column: str = "label") -> tuple[list[float] | list[int], str]:
    """(labels, task): numbers for a regression, class ids for a classification."""
    if task is None:
        task, _ = infer_task_of(raw, column, source)
        if task == "multilabel":
            raise ProbeInputError(f"{source}: column {column!r} holds lists of labels (multilabel); defib probe "
                                  "handles regression and classification")
    values = [_number(v) for v in raw]
    numbers = all(v is not None for v in values)
    if numbers and not all(math.isfinite(v) for v in values):
        raise ProbeInputError(f"{source}: empty, NaN or infinite labels")
    if task == "regression":
        if not numbers:
            bad = next(r for r, v in zip(raw, values) if v is None)
            raise ProbeInputError(f"{source}: label {bad!r} is not a number (--task regression)")
        return values, task
    if numbers and all(v.is_integer() and v >= 0 for v in values):
        return [int(v) for v in values], task  # class ids already: kept, as a trained head knows them
    if numbers:  # negative or fractional classes: ids in numeric order
        index = {v: i for i, v in enumerate(sorted(set(values)))}
        return [index[v] for v in values], task
    names = sorted({str(v) for v in raw})
    index = {name: i for i, name in enumerate(names)}
    return [index[str(v)] for v in raw], task


def _number(value: Any) -> float | None:
    """A label as a number (true/false as 1/0, text that spells one), or None."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def builtin_rows(task: str, n_classes: int, rows: int = 64, seed: int = 0) -> tuple[list[Any], list[Any], str]:
    """A sample of real data: STS-B pairs (regression) or Rotten Tomatoes reviews (classification)."""
    from defib.demos.data import SampleDataError, load_rotten_tomatoes, load_stsb

    rng = random.Random(seed)
    try:
        d = load_stsb("train") if task == "regression" else load_rotten_tomatoes()
    except SampleDataError as exc:
        raise ProbeInputError(f"{exc} (or pass --data)") from None
    if task == "regression":
        idx = rng.sample(range(len(d)), rows)
        return [(d.sentence1[i], d.sentence2[i]) for i in idx], [d.score[i] for i in idx], \
            f"a built-in STS-B sample ({rows} rows; no --data given)"
    keep = [i for i, y in enumerate(d.label) if y < n_classes]
    idx = rng.sample(keep, rows)
    return [d.text[i] for i in idx], [d.label[i] for i in idx], \
        f"a built-in Rotten Tomatoes sample ({rows} rows; no --data given)"
