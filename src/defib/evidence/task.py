"""The one rule for which task a label column implies; ``defib check``, ``probe`` and ``train`` all ask it.

Lists of tags, one per token of a row's token list, are token classification;
other lists are multilabel; text and true/false are classes; numbers with a
fractional part are a regression; whole numbers are classes when there are at
most :data:`MAX_CLASSES` distinct values, and a regression (a score, a count)
beyond that. Each answer comes with the reason the report shows.

The check streams its labels through
:class:`~defib.evidence.preflight.labels.LabelCounter` and asks
:func:`infer_task`; train and probe hold their labels in memory and ask
:func:`infer_task_of`, which reads them through the same counter, so a text
cell "3.0" or "[0, 1]" means the same to every command.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from defib.evidence.preflight.labels import LabelCounter
from defib.evidence.preflight.tags import TagCounter
from defib.evidence.readers import InputError
from defib.signals.check import LabelSignals
from defib.signals.run import TOKEN_TASK

TASKS = ("regression", "classification", "multilabel", TOKEN_TASK)  # every task a label column can imply
MAX_CLASSES = 20         # whole numbers with at most this many distinct values are read as classes


def infer_task(lab: LabelSignals) -> tuple[str, str]:
    """(task, why) from the label values (and, for tags per token, the token lists they were read against)."""
    if lab.tags is not None:
        return TOKEN_TASK, (f"the texts are lists of tokens and the labels lists of {len(lab.counts or {})} distinct "
                            "tags, one per token")
    if lab.kind == "list":
        return "multilabel", "the labels are lists"
    k = len(lab.counts or {})
    if lab.kind == "text":
        return "classification", f"the labels are {k} distinct text values"
    if lab.kind == "bool":
        return "classification", "the labels are true/false"
    if not lab.integral:
        return "regression", "the labels are numbers with fractional parts"
    if lab.counts is not None and k <= MAX_CLASSES:
        return "classification", f"the labels are {k} distinct whole numbers"
    return "regression", f"the labels are whole numbers with more than {MAX_CLASSES} distinct values"


def infer_task_of(values: Sequence[Any] | pa.Array, column: str, source: str,
                  tokens: Sequence[Sequence[str]] | None = None) -> tuple[str, str]:
    """(task, why) of a label column held in memory, read as the data check reads one.

    A missing, NaN or infinite label, or a column mixing numbers and text, is
    an :class:`~defib.evidence.readers.InputError` naming the row.
    """
    return infer_task(label_signals_of(values, column, source, tokens))


def label_signals_of(values: Sequence[Any] | pa.Array, column: str, source: str,
                     tokens: Sequence[Sequence[str]] | None = None) -> LabelSignals:
    """A label column held in memory, through the check's own counters.

    ``tokens``: each row's list of words (token classification); the labels
    are then read as tag lists against them, as the check reads a CoNLL file.
    """
    if not isinstance(values, pa.Array):
        try:
            values = pa.array(list(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(f"{source}: column {column!r} mixes label types "
                             f"({str(exc).splitlines()[0][:160]})") from None
    counter: LabelCounter | TagCounter
    if tokens is None:
        counter = LabelCounter(column, source)
        if len(values):
            counter.update(values, 1)
    else:
        counter = TagCounter(column, source)
        if len(values):
            counter.update(values, np.array([len(t) for t in tokens]), 1)
    return counter.signals()
