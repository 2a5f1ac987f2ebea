"""The user's rows for ``defib train`` and ``defib predict``, as columns of Python values.

The file is read by the one reader, :func:`defib.evidence.readers.load_columns`
(CSV, TSV, JSON Lines, Parquet, ``save_to_disk`` folders; compressed text
files too). Every error names the file, and the row or column, and is an
:class:`~defib.evidence.readers.InputError` that the CLI prints as one line
before exiting with status 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defib.evidence.readers import InputError, load_columns


@dataclass
class Columns:
    """The wanted columns of one file, as lists of equal length (labels as read: str, number or list).

    ``texts`` holds a list of words per row for token classification (a
    CoNLL file, or token lists in JSON Lines / Parquet), else one text per row.
    """

    path: Path
    texts: list[Any]
    pairs: list[str] | None
    labels: list[Any] | None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def per_token(self) -> bool:
        return bool(self.texts) and isinstance(self.texts[0], list)


def read_columns(path: str | Path, text: str, text_pair: str | None = None, label: str | None = None, *,
                 sniff_conll: bool = False) -> Columns:
    """Read ``text`` (and ``text_pair``, ``label`` when given) from a data file.

    ``sniff_conll``: token classification expected, so a ``.txt`` / ``.tsv``
    file without a header naming the columns is read as CoNLL (as defib check does).
    """
    path = Path(path)
    wanted = [(name, flag) for name, flag in [(text, "--text"), (text_pair, "--text-pair"), (label, "--label")]
              if name is not None]
    cols = load_columns(path, [name for name, _ in wanted], roles=[flag for _, flag in wanted],
                        sniff_conll=sniff_conll)
    if not cols[text]:
        raise InputError(f"{path}: no data rows")
    words = isinstance(cols[text][0], list)
    if words and text_pair:
        raise InputError(f"{path}: column {text!r} holds lists of tokens (token classification); --text-pair "
                         f"{text_pair} cannot pair with them")
    for name, flag in wanted:
        for row, value in enumerate(cols[name], 1):
            if value is None or (flag == "--label" and isinstance(value, str) and not value.strip()):
                raise InputError(f"{path}: row {row}: column {name!r} is empty")
            if flag == "--text" and words:
                if not isinstance(value, list) or not value or not all(isinstance(w, str) for w in value):
                    raise InputError(f"{path}: row {row}: column {name!r} is not a list of words ({str(value)[:60]}); "
                                     "the first row's is, so every row's must be")
            elif flag != "--label" and not isinstance(value, str):
                raise InputError(f"{path}: row {row}: column {name!r} is not text ({value!r})")
    return Columns(path, cols[text], cols[text_pair] if text_pair else None, cols[label] if label else None)
