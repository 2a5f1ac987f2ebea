"""The check stage: measure the data (:mod:`defib.evidence.preflight`), diagnose, build the ``check`` section.

``check_file`` is what ``defib check`` runs; ``check_data`` is the same on
Python lists (``defib.check_data``; ``defib train`` calls it before training).
Both return a :class:`~defib.diagnosis.Diagnosis` from the check-stage rules,
with a ``check`` section (rows, task, token-length and label histograms) in
its JSON. Bad input raises :class:`~defib.evidence.readers.InputError`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from defib.diagnosis import Diagnosis, diagnose
from defib.evidence.preflight.labels import label_text
from defib.evidence.preflight.measure import measure_data, measure_file
from defib.signals.check import CheckSignals, LabelSignals
from defib.signals.run import TOKEN_TASK

LENGTH_BINS = 16           # token-length histogram bins up to max_length (more beyond it)


def check_file(path: str | Path, *, text: str, label: str, model: Any, text_pair: str | None = None,
               tokenizer: Any = None, max_length: int | None = None, task: str | None = None,
               delimiter: str | None = None, progress: bool = False, ignore: tuple[str, ...] = ()) -> Diagnosis:
    """Check a data file (CSV, TSV, JSON Lines, Parquet, or a ``save_to_disk`` folder) for a model."""
    with _progress(progress) as tick:
        signals = measure_file(path, text=text, label=label, model=model, text_pair=text_pair, tokenizer=tokenizer,
                               max_length=max_length, task=task, delimiter=delimiter, tick=tick)
    return _diagnose(signals, ignore)


def check_data(texts: Sequence[str], labels: Sequence[Any], *, text_pairs: Sequence[str] | None = None,
               model: Any, max_length: int | None = None, task: str | None = None,
               tokenizer: Any = None, ignore: tuple[str, ...] = ()) -> Diagnosis:
    """Check in-memory columns: ``defib.check_data(texts, labels, model="path/to/model")``.

    ``model`` is a model folder or hub name (its tokenizer and config are
    read; no weights are loaded); ``tokenizer`` overrides the tokenizer (a
    name, a folder, or a fast tokenizer object). ``task`` is inferred from the
    labels when not given. Rows in messages are counted from 1. ``ignore``:
    rule codes left out of the diagnosis.
    """
    signals = measure_data(texts, labels, text_pairs=text_pairs, model=model, max_length=max_length, task=task,
                           tokenizer=tokenizer)
    return _diagnose(signals, ignore)


def _diagnose(s: CheckSignals, ignore: tuple[str, ...]) -> Diagnosis:
    d = diagnose(s, stage="check", ignore=ignore)
    d.extra["check"] = check_section(s)
    return d


def check_section(s: CheckSignals) -> dict[str, Any]:
    """The JSON report's ``check`` section (the HTML report plots it)."""
    t = s.tokens
    out: dict[str, Any] = {
        "source": s.source, "rows": s.rows, "text_columns": s.text_columns, "label_column": s.label_column,
        "task": s.task, "task_inferred": s.task_inferred, "task_reason": s.task_reason,
        "max_length": t.max_length if t else None, "max_length_source": t.max_length_source if t else None,
        "tokenizer": t.tokenizer if t else None,
        "token_lengths": length_histogram(t.length_counts, t.max_length) if t else None,
        "labels": label_summary(s.labels, s.task) if s.labels else None,
    }
    if t and t.rows:
        out["rows_truncated"] = t.rows_truncated
        out["token_lengths"].update(p50=t.length_quantile(0.5), p95=t.length_quantile(0.95))
    return out


def length_histogram(counts: list[int], max_length: int) -> dict[str, Any]:
    """Token lengths in bins of max_length/16 (max_length is always an edge), to the longest row or 4x max_length."""
    a = np.asarray(counts, dtype=np.int64)
    width = max(1, math.ceil(max_length / LENGTH_BINS))
    longest = len(a) - 1 if len(a) else 0
    top = min(max(longest + 1, max_length + 1), 4 * max_length)
    edges = sorted({*range(0, top + width, width), max_length})
    cum = np.concatenate([[0], np.cumsum(a)])
    bounded = [min(e, len(a)) for e in edges]
    bins = [int(cum[hi] - cum[lo]) for lo, hi in zip(bounded[:-1], bounded[1:])]
    bins[-1] += int(cum[-1] - cum[bounded[-1]])  # rows beyond the last edge join the last bin
    return {"bin_edges": edges, "counts": bins, "max_length": max_length, "longest": longest}


def label_summary(lab: LabelSignals, task: str, bins: int = 30) -> dict:
    """The report's ``labels`` section: class counts (tag counts over tokens), or a histogram of the numbers."""
    if task == "regression" and lab.sample:
        sample = np.asarray(lab.sample)
        edges = np.histogram_bin_edges(sample, bins=bins)
        counts, _ = np.histogram(sample, bins=edges)
        scale = lab.rows / len(sample)
        return {"kind": "regression", "bin_edges": [float(e) for e in edges],
                "counts": [int(round(c * scale)) for c in counts], "mean": lab.mean, "std": lab.std,
                "min": lab.min, "max": lab.max, "sampled_rows": len(sample)}
    counts = {label_text(k): n for k, n in (lab.counts or {}).items()}
    if task == TOKEN_TASK:
        top = max(counts.values(), default=0)
        return {"kind": task, "counts": counts, "tags": lab.tags,
                "majority_share": round(top / lab.tags, 4) if lab.tags else None,
                "misaligned_rows": lab.misaligned_rows}
    return {"kind": task if task in ("classification", "multilabel") else "classification", "counts": counts}


class _progress:
    """A rich progress bar on stderr for long checks; a no-op when off or not on a terminal.

    The bar appears at the first tick, once the file is open and the tokenizer
    loaded, so an error before any row is read prints without a bar.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda rows, fraction: None
        return self._tick

    def _tick(self, rows: int, fraction: float | None) -> None:
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("checking"), BarColumn(), TextColumn("{task.fields[rows]:,} rows"),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("check", total=1.0, rows=0)
        self.bar.update(self.task, completed=fraction, rows=rows)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
