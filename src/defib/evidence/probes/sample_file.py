"""Rows for ``defib probe``: a small reader for CSV / TSV / JSONL files, or a built-in sample.

Deliberately minimal and in one function (:func:`read_rows`), so that the
full readers behind ``defib check`` can replace it. Errors are
:class:`ProbeInputError` with one line naming the file and what is wrong.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from defib.evidence.probes.data import ProbeInputError

MAX_READ = 20_000  # rows read from a file before sampling (the probe uses a few dozen)


def read_rows(path: Path, text: str, label: str, text_pair: str | None = None, *, rows: int = 64,
              seed: int = 0) -> tuple[list[Any], list[Any]]:
    """(texts or (text, text) pairs, raw labels) for ``rows`` rows drawn at random from the file."""
    if not path.is_file():
        raise ProbeInputError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            if suffix == ".jsonl":
                records = []
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            records.append(json.loads(line))
                        except ValueError as exc:
                            raise ProbeInputError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
                    if len(records) >= MAX_READ:
                        break
            elif suffix in (".csv", ".tsv"):
                reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
                records = [r for _, r in zip(range(MAX_READ), reader)]
            else:
                raise ProbeInputError(f"{path}: unsupported file type {suffix or '(none)'}; use .csv, .tsv or .jsonl")
    except UnicodeDecodeError:
        raise ProbeInputError(f"{path}: not UTF-8 text") from None
    if not records:
        raise ProbeInputError(f"{path}: no rows")
    for col in (text, label) + ((text_pair,) if text_pair else ()):
        if not isinstance(records[0], dict) or col not in records[0]:
            have = ", ".join(records[0]) if isinstance(records[0], dict) else "none"
            raise ProbeInputError(f"{path}: no column {col!r} (columns: {have})")
    picked = random.Random(seed).sample(records, min(rows, len(records)))
    texts = [(str(r[text]), str(r[text_pair])) if text_pair else str(r[text]) for r in picked]
    return texts, [r[label] for r in picked]


def parse_labels(raw: list[Any], task: str | None, source: str) -> tuple[list[float] | list[int], str, list[str]]:
    """Numbers, or class names mapped to ids; (labels, task, class names if any)."""
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        if task == "regression":
            bad = next(v for v in raw if not _is_number(v))
            raise ProbeInputError(f"{source}: label {bad!r} is not a number (--task regression)") from None
        names = sorted({str(v) for v in raw})
        return [names.index(str(v)) for v in raw], "classification", names
    if any(v != v for v in values):
        raise ProbeInputError(f"{source}: empty or NaN labels")
    if task is None:
        whole = all(v == int(v) and v >= 0 for v in values)
        task = "classification" if whole and len(set(values)) <= 20 else "regression"
    if task == "classification":
        return [int(v) for v in values], task, []
    return values, task, []


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def builtin_rows(task: str, n_classes: int, rows: int = 64, seed: int = 0) -> tuple[list[Any], list[Any], str]:
    """A sample of real data: STS-B pairs (regression) or Rotten Tomatoes reviews (classification)."""
    from defib.demos.data import load_rotten_tomatoes, load_stsb

    rng = random.Random(seed)
    if task == "regression":
        d = load_stsb("train")
        idx = rng.sample(range(len(d)), rows)
        return [(d.sentence1[i], d.sentence2[i]) for i in idx], [d.score[i] for i in idx], \
            f"a built-in STS-B sample ({rows} rows; no --data given)"
    d = load_rotten_tomatoes()
    keep = [i for i, y in enumerate(d.label) if y < n_classes]
    idx = rng.sample(keep, rows)
    return [d.text[i] for i in idx], [d.label[i] for i in idx], \
        f"a built-in Rotten Tomatoes sample ({rows} rows; no --data given)"
