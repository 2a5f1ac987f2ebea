"""Read the user's CSV / TSV / JSON Lines file into columns, or say in one line what is wrong.

A small reader of its own (the standard library's csv and json), so that
``defib train`` needs nothing beyond its dependencies. Every error names the
file, and the row or column, and is a :class:`DataError` that the CLI prints
as one line before exiting with status 2.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class DataError(ValueError):
    """Bad input: the message is the one line the user sees."""


@dataclass
class Columns:
    """The wanted columns of one file, as lists of equal length (labels as read: str, number or list)."""

    path: Path
    texts: list[str]
    pairs: list[str] | None
    labels: list[Any] | None

    def __len__(self) -> int:
        return len(self.texts)


def read_columns(path: str | Path, text: str, text_pair: str | None = None, label: str | None = None) -> Columns:
    """Read ``text`` (and ``text_pair``, ``label`` when given) from a CSV, TSV or JSON Lines file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file (CSV, TSV or JSON Lines)")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown format {path.suffix!r}; use .csv, .tsv or .jsonl")
    wanted = [(text, "--text"), (text_pair, "--text-pair"), (label, "--label")]
    wanted = [(name, flag) for name, flag in wanted if name is not None]
    try:
        records = _jsonl(path) if fmt == "jsonl" else _delimited(path, "\t" if fmt == "tsv" else ",")
        header, rows = records
        for name, flag in wanted:
            if name not in header:
                shown = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
                raise DataError(f"{path}: no column {name!r} ({flag}); its columns are: {shown}")
        cols: dict[str, list[Any]] = {name: [] for name, _ in wanted}
        for line, row in rows:
            for name, flag in wanted:
                value = row.get(name)
                if value is None or (isinstance(value, str) and not value.strip() and flag == "--label"):
                    raise DataError(f"{path}: row {line}: column {name!r} is empty")
                cols[name].append(value)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed {fmt.upper()} ({exc})") from None
    if not cols[text]:
        raise DataError(f"{path}: no data rows")
    for name in (text, text_pair):
        if name is not None:
            bad = next((i for i, v in enumerate(cols[name]) if not isinstance(v, str)), None)
            if bad is not None:
                raise DataError(f"{path}: row {bad + 1}: column {name!r} is not text ({cols[name][bad]!r})")
    return Columns(path, cols[text], cols[text_pair] if text_pair else None, cols[label] if label else None)


def _delimited(path: Path, delimiter: str) -> tuple[list[str], Any]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    fh = open(path, encoding="utf-8-sig", newline="")
    reader = csv.reader(fh, delimiter=delimiter)
    header = next(reader, None)
    if not header:
        fh.close()
        raise DataError(f"{path}: the file is empty")

    def rows():
        with fh:
            for i, values in enumerate(reader, 1):
                if not values or values == [""]:
                    continue  # blank line
                if len(values) != len(header):
                    raise DataError(f"{path}: row {i}: {len(values)} fields where the header has {len(header)}")
                yield i, dict(zip(header, values))

    return header, rows()


def _jsonl(path: Path) -> tuple[list[str], Any]:
    lines: list[tuple[int, dict]] = []
    header: list[str] = []
    with open(path, encoding="utf-8-sig") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}: line {i}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}: line {i}: a JSON object per line is expected, got {type(obj).__name__}")
            header.extend(k for k in obj if k not in header)
            lines.append((i, obj))
    if not lines:
        raise DataError(f"{path}: the file is empty")
    return header, iter(lines)
