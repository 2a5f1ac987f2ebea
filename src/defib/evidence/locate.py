"""Find where a text data file is malformed, after pyarrow has said only *that* it is.

pyarrow's CSV errors name neither the row nor the line ("Expected 2 columns,
got 3"), and its UTF-8 errors not even the column. These functions rescan
the file with the standard library, on the error path only, and return the
one-line message the user sees: the file, the row (data rows counted from 1,
the header not counted) and the line, and what is wrong there.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from pathlib import Path

import pyarrow as pa

NEWLINE = b"\n"
MAX_FIELD_CHARS = 1_000_000   # one text field longer than this is a broken file (an unclosed quote, a pasted file)


def text_stream(path: Path, compression: str | None) -> io.TextIOWrapper:
    """The file as UTF-8 text (a BOM dropped, newlines kept as written), decompressed on the way."""
    raw = pa.input_stream(str(path), compression=compression)
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")


def bad_utf8(path: Path, compression: str | None) -> str | None:
    """'line N (byte B)' of the first byte sequence that is not UTF-8, or None."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    line, offset = 1, 0
    with pa.input_stream(str(path), compression=compression) as raw:
        while chunk := raw.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                before = chunk.count(NEWLINE, 0, exc.start)
                return f"line {line + before} (byte {offset + exc.start})"
            line += chunk.count(NEWLINE)
            offset += len(chunk)
    return None


def csv_problem(path: Path, compression: str | None, delimiter: str, columns: list[str], arrow_message: str) -> str:
    """The first malformed row of a CSV/TSV file, as one line; ``arrow_message`` if none is found."""
    where = bad_utf8(path, compression)
    if where:
        return f"{path}: {where} is not valid UTF-8; save the file as UTF-8"
    old_limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        with text_stream(path, compression) as fh:
            reader = csv.reader(fh, delimiter=delimiter, strict=True)
            header = next(reader, [])
            wanted = [header.index(c) for c in columns if c in header]
            row, last_line = 0, reader.line_num
            try:
                for fields in reader:
                    row += 1
                    if len(fields) != len(header) and fields:
                        return (f"{path}: row {row} (line {last_line + 1}) has {len(fields)} fields, the header has "
                                f"{len(header)}" + _ragged_hint(fields, header, delimiter))
                    for i in wanted:
                        if len(fields[i]) > MAX_FIELD_CHARS:
                            return (f"{path}: row {row} (line {last_line + 1}), column {header[i]!r} holds "
                                    f"{len(fields[i]):,} characters; a field that long is usually a quote that never "
                                    "closes or a whole file pasted into one cell")
                    last_line = reader.line_num
            except csv.Error as exc:
                if "end of data" in str(exc) or "EOF" in str(exc):
                    return (f"{path}: a quote opened in row {row + 1} (line {last_line + 1}) never closes; "
                            "the rest of the file was read as one field")
                return f"{path}: row {row + 1} (line {last_line + 1}): {exc}"
    finally:
        csv.field_size_limit(old_limit)
    detail = arrow_message.replace("CSV parse error: ", "").splitlines()[0][:200]
    return f"{path}: cannot parse the file: {detail}"


def _ragged_hint(fields: list[str], header: list[str], delimiter: str) -> str:
    if len(fields) > len(header):
        return f" (a {_name(delimiter)} inside an unquoted text? quote the field)"
    return " (a missing value or a line break inside an unquoted text?)"


def _name(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(delimiter, repr(delimiter))


JSON_KINDS = {bool: "true/false", int: "number", float: "number", str: "text", list: "list", dict: "object",
              type(None): "null"}


def jsonl_problem(path: Path, compression: str | None, columns: list[str], arrow_message: str) -> str:
    """The first malformed line of a JSON Lines file, as one line; ``arrow_message`` if none is found."""
    where = bad_utf8(path, compression)
    if where:
        return f"{path}: {where} is not valid UTF-8; save the file as UTF-8"
    kinds: dict[str, tuple[str, int]] = {}
    with text_stream(path, compression) as fh:
        row = 0
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row += 1
            try:
                obj = json.loads(line)
            except ValueError as exc:
                if line_no == 1 and line.lstrip().startswith("["):
                    return f"{path}: holds a JSON array, not JSON Lines (one object per line); convert it first"
                return f"{path}: row {row} (line {line_no}) is not valid JSON: {str(exc).split(':')[0]}"
            if not isinstance(obj, dict):
                return f"{path}: row {row} (line {line_no}) is a JSON {JSON_KINDS.get(type(obj), 'value')}, not an object"
            for name in columns:
                if name not in obj:
                    continue
                if isinstance(obj[name], str) and len(obj[name]) > MAX_FIELD_CHARS:
                    return (f"{path}: row {row} (line {line_no}), column {name!r} holds {len(obj[name]):,} "
                            "characters; a text that long is usually a whole file pasted into one field")
                kind = JSON_KINDS.get(type(obj[name]), "value")
                if kind == "null":
                    continue
                seen = kinds.setdefault(name, (kind, row))
                if seen[0] != kind:
                    return (f"{path}: row {row} (line {line_no}), column {name!r} is {kind} where row {seen[1]} "
                            f"is {seen[0]}: one column must hold one type")
    detail = arrow_message.replace("JSON parse error: ", "").splitlines()[0][:200]
    return f"{path}: cannot parse the file: {detail}"
