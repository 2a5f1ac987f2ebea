"""Which user line gave each column of a ``datasets.Dataset`` its values: where a finding about the labels points.

sentence-transformers' trainers read the labels from a column of the Dataset they are given (``label``,
``score``) and compare them inside the library, so the loss call shows no user line that made them. Each
Dataset records, when it is made, the user's call that made it (``Dataset.from_dict``, ``add_column``,
``map``) for the columns that call produced, and inherits the record of the Dataset it was made from for the
others (``select``, ``shuffle``, ``train_test_split``; the operations that copy a Dataset carry the record
along with its attributes). :func:`label_where` reads it for the training loader's dataset.

Cheap whatever the data's size: one walk up the stack per Dataset made, never per row; a ``map``, which can
rewrite a column in place, compares the first rows of the columns it kept with its source's.
"""

from __future__ import annotations

import ast
from types import FrameType
from typing import Any

from defib.evidence.callsite import _tree, is_user_file, make_where
from defib.evidence.provenance import _key_origin
from defib.signals.common import Where

LABEL_COLUMNS = ("label", "labels", "score", "scores")  # the columns sentence-transformers' collators read, in order
COMPARED_ROWS = 8  # first rows of a column a map kept, compared with its source's to see whether it rewrote them


def note_columns(ds: Any, frame: FrameType | None) -> None:
    """Record on ``ds`` the user's call behind each of its columns, walking out from ``frame`` to the user's code."""
    source, mapped = None, False
    while frame is not None and not is_user_file(frame.f_code.co_filename):
        owner = frame.f_locals.get("self")
        if owner is not ds and isinstance(owner, type(ds)):
            source = owner  # the outermost: the Dataset the user's call was made on
        mapped = mapped or frame.f_code.co_name == "map"
        frame = frame.f_back
    if frame is None:
        return
    call = (frame.f_code.co_filename, frame.f_lineno)
    inherited = getattr(source, "_defib_columns", {})
    ds._defib_columns = {c: inherited[c] if c in inherited and not (mapped and _rewritten(ds, source, c)) else call
                         for c in ds.column_names}


def _rewritten(ds: Any, source: Any, column: str) -> bool:
    """Whether a map changed the first rows of ``column`` (the map's output is in its source's row order)."""
    try:
        new = ds.data.column(column).slice(0, COMPARED_ROWS)
        old = source.data.column(column)
        indices = source._indices  # a shuffled or selected source reads its rows through an index table
        old = old.take(indices.column(0).slice(0, COMPARED_ROWS)) if indices is not None else \
            old.slice(0, COMPARED_ROWS)
        return not new.equals(old)
    except Exception:  # a table this version of datasets lays out otherwise: the map's line, as for a new column
        return True


def label_where(ds: Any) -> Where | None:
    """The user's line that made the labels column of ``ds`` (None: not a recorded Dataset, or no such column)."""
    lines = getattr(ds, "_defib_columns", None)
    column = next((c for c in LABEL_COLUMNS if c in (lines or {})), None)
    if column is None:
        return None
    file, line = lines[column]
    found = column_line(file, line, column)
    return make_where(file, found) if found else None


def column_line(filename: str, line: int, column: str) -> int | None:
    """The line that gave a dataset's ``column`` its values in the call on ``line``; None when the file does not
    show it.

    ``Dataset.from_dict({"text": t, "label": [1.0] * n})`` over several lines: the ``"label"`` entry;
    ``ds.map(lambda r: {"label": ...})``: the entry in the function's dict; ``Dataset.from_dict(cols)`` or
    ``ds.map(relabel)``: the one place in the file that puts a value under that key (``cols["label"] = ...``,
    ``row["label"] = ...``), if only one does, else for a ``map`` (which rewrote the column) its own line.
    ``ds.add_column("label", values)`` names the column at its line.
    """
    tree = _tree(filename)
    if tree is None:
        return None
    calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)
                    and n.lineno <= line <= (n.end_lineno or n.lineno)), key=lambda n: (n.end_lineno or n.lineno) - n.lineno)
    for call in calls:
        entries = [v.lineno for arg in (*call.args, *(k.value for k in call.keywords)) for d in ast.walk(arg)
                   if isinstance(d, ast.Dict) for k, v in zip(d.keys, d.values)
                   if isinstance(k, ast.Constant) and k.value == column]
        if entries:
            return entries[0]
        if any(isinstance(a, ast.Constant) and a.value == column for a in call.args):
            return line  # add_column("label", ...): named here
        if call.args and isinstance(call.args[0], ast.Name):
            mapped = isinstance(call.func, ast.Attribute) and call.func.attr == "map"
            return _key_origin(tree, column) or (line if mapped else None)
    return None
