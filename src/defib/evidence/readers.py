"""Open a user's data file as a stream of Arrow record batches, or say in one line what is wrong with it.

The one reader of the user's data files: ``defib check`` streams its batches
(:func:`open_table`); ``train``, ``predict`` and ``probe``, which hold their
rows in memory, take them as Python lists (:func:`load_columns`).

Formats: CSV, TSV (optionally .gz/.bz2/.zst compressed), JSON Lines, Parquet,
a folder written by ``datasets.Dataset.save_to_disk`` (its ``.arrow``
files are Arrow IPC streams, read here without the ``datasets`` package), and
CoNLL-style token files (``.conll``/``.iob``/``.bio``, or a ``.txt``/``.tsv``
that looks like one when the caller expects tokens and tags): one
``token<TAB or spaces>tag`` per line, more columns allowed with the tag last,
a blank line between sentences, ``-DOCSTART-`` lines skipped. A CoNLL file
has no header, so its rows (one per sentence) take the caller's two column
names: a list of tokens, then a list of tags.

Everything streams: CSV and JSON Lines in blocks, Parquet by row group, Arrow
by record batch, so memory does not grow with the file. Nothing is ever
written next to the input.

pyarrow's own parse errors do not say where the problem is (no row, often no
column). When one happens, :mod:`defib.evidence.locate` rescans the file with
the standard library to name the row, and the error becomes an
:class:`InputError`: one line that the CLI prints before exiting with 2.

What no command accepts is decided here, once, for all of them: a column
name used twice, a text field longer than ``MAX_FIELD_CHARS`` (checked per
batch, so ``predict`` refuses a 50 MB cell as fast as ``check`` does), a
truncated compressed stream, a corrupt Arrow file.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from defib.evidence.locate import MAX_FIELD_CHARS

BLOCK_BYTES = 4 << 20       # CSV / JSON block: bounded memory, and fields past this size are an error anyway
PARQUET_BATCH = 65_536      # rows per Parquet batch
HEADER_BYTES = 1 << 20      # a CSV header row longer than this is not a header
TEXT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
                ".conll": "conll", ".iob": "conll", ".bio": "conll"}
CONLL_LOOKALIKES = ("", ".txt", ".tsv", ".tab")  # names CoNLL files often carry (CoNLL-2003's train.txt)
CONLL_SENTENCES = 4096      # sentences per CoNLL batch
SNIFF_BYTES = 1 << 16       # text read to tell a CoNLL file from a table with a header
BINARY_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow"}
COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
MAGIC = [(b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\xfd7zXZ\x00", "xz"),
         (b"PK\x03\x04", "zip"), (b"PAR1", "parquet"), (b"ARROW1", "arrow"), (b"\xff\xff\xff\xff", "arrow")]
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class InputError(ValueError):
    """Bad input (file, column, label, model): the message is the one line the user sees."""


@dataclass
class Table:
    """An opened data source: its columns and a stream of batches holding only the wanted ones."""

    path: Path
    format: str
    columns: list[str]
    total_rows: int | None            # known up front for Parquet; None for text formats
    batches: Generator[pa.RecordBatch, None, None]
    done_fraction: Callable[[], float] | None = None   # bytes read / file size, for the progress bar


def open_table(path: str | Path, columns: list[str], *, delimiter: str | None = None,
               roles: list[str] | None = None, sniff_conll: bool = False) -> Table:
    """Open ``path`` and check that ``columns`` exist; raise :class:`InputError` on anything malformed.

    ``roles`` name each column's part in the messages (``--text``); default "requested". One column
    cannot play two roles (text and label): every command refuses it here. ``sniff_conll``: the
    caller expects tokens and tags, so a ``.txt``/``.tsv`` file whose first line is a token and a
    tag rather than a header is read as CoNLL.
    """
    path = Path(path)
    roles = roles or ["requested"] * len(columns)
    for i, name in enumerate(columns):
        if name in columns[:i]:
            first = columns.index(name)
            raise InputError(f"the same column is given twice: {roles[first]} {name} and {roles[i]} {name}")
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        table = _open_saved_dataset(path, columns, roles)
    else:
        fmt, compression = _format(path, columns if sniff_conll else None)
        if fmt == "conll":
            table = _open_conll(path, columns, roles, compression)
        elif fmt in ("csv", "tsv"):
            table = _open_csv(path, columns, roles, compression, delimiter or ("\t" if fmt == "tsv" else ","))
        elif fmt == "jsonl":
            table = _open_jsonl(path, columns, roles, compression)
        elif fmt == "parquet":
            table = _open_parquet(path, columns, roles)
        else:
            table = _open_arrow_files(path, [path], columns, roles)
    table.batches = _bounded_fields(path, table.batches)
    return table


def load_columns(path: str | Path, columns: list[str], *, roles: list[str] | None = None,
                 max_rows: int | None = None, sniff_conll: bool = False) -> dict[str, list[Any]]:
    """Every row (or the first ``max_rows``) of ``columns`` as Python lists, for commands that hold rows in memory.

    Text formats give strings; JSON Lines, Parquet and Arrow give their
    values' own types (None where missing); a CoNLL file gives lists of
    tokens and tags. ``sniff_conll`` as for :func:`open_table`.
    """
    table = open_table(path, columns, roles=roles, sniff_conll=sniff_conll)
    out: dict[str, list[Any]] = {c: [] for c in columns}
    read = 0
    try:
        for batch in table.batches:
            if max_rows is not None:
                batch = batch.slice(0, max_rows - read)
            for c in columns:
                out[c].extend(batch.column(c).to_pylist())
            read += batch.num_rows
            if max_rows is not None and read >= max_rows:
                break
    finally:
        table.batches.close()  # every opener's batches are a generator: closing it closes the file
    return out


def _bounded_fields(path: Path, batches: Generator[pa.RecordBatch, None, None]) -> Iterator[pa.RecordBatch]:
    """The batches, refusing the first text field over MAX_FIELD_CHARS (before any command tokenizes it)."""
    row0 = 1
    try:
        for batch in batches:
            check_field_lengths(str(path), batch.schema.names, batch.columns, row0)
            row0 += batch.num_rows
            yield batch
    finally:
        batches.close()


def check_field_lengths(source: str, names: list[str], arrays: list[pa.Array], row0: int) -> None:
    """Refuse a text cell longer than MAX_FIELD_CHARS, naming its row (``row0`` is the first array row's)."""
    for name, arr in zip(names, arrays):
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)) or not len(arr):
            continue
        lengths = pc.utf8_length(arr)
        longest = pc.max(lengths).as_py() or 0
        if longest > MAX_FIELD_CHARS:
            row = row0 + pc.index(lengths, longest).as_py()
            raise InputError(f"{source}: row {row}, column {name!r} holds {longest:,} characters; a field that "
                             "long is usually a quote that never closes or a whole file pasted into one cell")


# ---------------------------------------------------------------- format
def is_conll(path: str | Path, columns: list[str]) -> bool:
    """Whether :func:`open_table` reads ``path`` as a CoNLL file when the caller expects tokens and tags."""
    path = Path(path)
    return path.is_file() and _format(path, columns)[0] == "conll"


def _format(path: Path, conll_columns: list[str] | None = None) -> tuple[str, str | None]:
    """(format, compression) from the name, checked against the file's first bytes.

    ``conll_columns``: the columns a caller expecting tokens and tags asked for; a file named like
    a table or plain text whose first line is not a header naming them is read as CoNLL.
    """
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: the file is empty")
    with open(path, "rb") as fh:
        head = fh.read(8)
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSED.get(suffixes[-1]) if suffixes else None
    name_suffix = suffixes[-2] if compression and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    fmt = TEXT_FORMATS.get(name_suffix) or BINARY_FORMATS.get(name_suffix)
    actual = next((kind for magic, kind in MAGIC if head.startswith(magic)), None)
    if (conll_columns is not None and name_suffix in CONLL_LOOKALIKES and actual in (None, compression)
            and _looks_conll(path, compression, conll_columns)):
        fmt = "conll"
    if fmt is None:
        known = ", ".join(sorted({*TEXT_FORMATS, *BINARY_FORMATS}))
        hint = f" (its bytes look like {actual})" if actual else ""
        raise InputError(f"{path}: unknown file type {name_suffix or '(no extension)'!r}{hint}; use one of {known}")
    if compression and actual != compression:
        raise InputError(f"{path}: named {suffixes[-1]} but its bytes are not {compression}-compressed"
                         + (f" (they look like {actual})" if actual else ""))
    if not compression and fmt in TEXT_FORMATS.values() and actual is not None:
        fix = {"gzip": ".gz", "bz2": ".bz2", "zstd": ".zst"}.get(actual)
        if fix:
            todo = f"rename it to {path.name}{fix}"
        elif actual in ("parquet", "arrow"):
            todo = f"rename it to {path.stem}.{actual}"
        else:
            todo = f"decompress it, or save it as {fmt}"
        raise InputError(f"{path}: named {name_suffix} but the file is {actual} data; {todo}")
    if fmt == "parquet" and actual != "parquet":
        raise InputError(f"{path}: named {name_suffix} but it is not a Parquet file (no PAR1 magic bytes)")
    if not compression and head.startswith(UTF16_BOMS):
        raise InputError(f"{path}: the file is UTF-16 encoded (it starts with a UTF-16 byte order mark); "
                         "save it as UTF-8")
    return fmt, compression


def missing_column(path: Path, name: str, available: list[str], role: str) -> InputError:
    """The error for a column that is not there, with a did-you-mean."""
    lower = {c.lower(): c for c in available}
    guess = lower.get(name.lower()) or next(iter(difflib.get_close_matches(name, available, n=1, cutoff=0.6)), None)
    hint = f"; did you mean {guess!r}?" if guess else ""
    shown = ", ".join(repr(c) for c in available[:12]) + (", ..." if len(available) > 12 else "")
    return InputError(f"{path}: no column {name!r} (the {role} column){hint} Columns: {shown}")


def check_unique(path: Path, names: list[str], where: str = "schema") -> None:
    """A column name used twice is an error for every command: which of the two is meant cannot be told."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"{path}: the {where} names column {name!r} more than once; rename or drop one")
        seen.add(name)


def check_columns(path: Path, available: list[str], columns: list[str], roles: list[str]) -> None:
    """A column name used twice, or a missing column, is an error (the missing one's names its role)."""
    check_unique(path, available)
    for name, role in zip(columns, roles):
        if name not in available:
            raise missing_column(path, name, available, role)


# ---------------------------------------------------------------- CSV / TSV
def _header(path: Path, compression: str | None, delimiter: str) -> list[str]:
    """The header row, read with the standard library (BOM stripped)."""
    try:
        with pa.input_stream(str(path), compression=compression) as raw:
            head = raw.read(HEADER_BYTES + 1)
    except (OSError, pa.ArrowException) as exc:
        raise _corrupt(path, compression, exc) from None
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    if len(head) > HEADER_BYTES and "\n" not in text and "\r" not in text:
        raise InputError(f"{path}: the first line is longer than {HEADER_BYTES >> 20} MB; expected a header row "
                         "with column names")
    try:
        first = next(csv.reader(io.StringIO(text), delimiter=delimiter), None)
    except csv.Error as exc:
        raise InputError(f"{path}: cannot read the header row ({exc})") from None
    if not first or not any(c.strip() for c in first):
        raise InputError(f"{path}: the first line is empty; expected a header row with column names")
    return first


def _open_csv(path: Path, columns: list[str], roles: list[str], compression: str | None, delimiter: str) -> Table:
    import pyarrow.csv as pacsv

    from defib.evidence.locate import csv_problem

    header = _header(path, compression, delimiter)
    check_unique(path, header, "header")
    for name, role in zip(columns, roles):
        if name not in header:
            for other in ("\t", ";", "|", ","):
                if other != delimiter and name in next(csv.reader([delimiter.join(header)], delimiter=other)):
                    shown = {"\t": "tab", ";": "semicolon", "|": "pipe", ",": "comma"}[other]
                    raise InputError(f"{path}: the header looks {shown}-separated, not {_name(delimiter)}-separated; "
                                     f"pass --delimiter {other!r}" + (" or name the file .tsv" if other == "\t" else ""))
            raise missing_column(path, name, header, role)
    read = pacsv.ReadOptions(block_size=BLOCK_BYTES)
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    convert = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns},
                                   strings_can_be_null=False)
    stream = pa.input_stream(str(path), compression=compression)
    size = path.stat().st_size

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
            for batch in reader:
                yield batch
        except pa.ArrowInvalid as exc:
            raise _located(lambda why=str(exc): csv_problem(path, compression, delimiter, columns, why), path, compression) \
                from None
        except (OSError, pa.ArrowException) as exc:
            raise _corrupt(path, compression, exc) from None
        finally:
            stream.close()

    def done() -> float:
        # compressed streams report the decompressed position; only a plain file gives a fraction
        return 0.0 if compression or stream.closed else min(1.0, stream.tell() / size)

    return Table(path, "csv" if delimiter != "\t" else "tsv", header, None, batches(), done)


def _name(delimiter: str) -> str:
    return {"\t": "tab", ";": "semicolon", "|": "pipe", ",": "comma"}.get(delimiter, repr(delimiter))


# ---------------------------------------------------------------- CoNLL
def _conll_fields(line: str) -> list[str]:
    """A CoNLL line's columns: tab-separated when it has tabs (a token may hold spaces), else by whitespace."""
    if "\t" in line:
        return [f.strip() for f in line.strip("\r\n").split("\t") if f.strip()]
    return line.split()


def _looks_conll(path: Path, compression: str | None, columns: list[str]) -> bool:
    """The first line that is not blank or -DOCSTART- has two or more columns, and is not a header naming ``columns``."""
    from defib.evidence.locate import text_stream

    try:
        with text_stream(path, compression) as fh:
            head = fh.read(SNIFF_BYTES)
    except (OSError, UnicodeDecodeError, pa.ArrowException):
        return False  # the reader the name implies says what is wrong with it
    for line in head.splitlines():
        fields = _conll_fields(line)
        if fields and fields[0] != "-DOCSTART-":
            return len(fields) >= 2 and not set(columns) <= set(fields)
    return False


def _open_conll(path: Path, columns: list[str], roles: list[str], compression: str | None) -> Table:
    from defib.evidence.locate import bad_utf8, text_stream

    if len(columns) != 2:
        raise InputError(f"{path}: a CoNLL file holds one sentence per row (its tokens and their tags); "
                         f"{' and '.join(roles[1:-1])} cannot apply")
    list_type = pa.list_(pa.string())

    def batch(tokens: list[list[str]], tags: list[list[str]]) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays([pa.array(tokens, list_type), pa.array(tags, list_type)], names=columns)

    def batches() -> Iterator[pa.RecordBatch]:
        tokens: list[list[str]] = []
        tags: list[list[str]] = []
        words: list[str] = []
        marks: list[str] = []
        try:
            with text_stream(path, compression) as fh:
                for number, line in enumerate(fh, 1):
                    fields = _conll_fields(line)
                    if fields and fields[0] == "-DOCSTART-":
                        continue
                    if fields and len(fields) < 2:
                        raise InputError(f"{path}: line {number} ({line.strip()[:40]!r}) has no tag; expected a "
                                         "token and its tag separated by a tab or spaces, a blank line between sentences")
                    if fields:
                        words.append(fields[0])
                        marks.append(fields[-1])
                    elif words:
                        tokens.append(words)
                        tags.append(marks)
                        words, marks = [], []
                        if len(tokens) == CONLL_SENTENCES:
                            yield batch(tokens, tags)
                            tokens, tags = [], []
            if words:
                tokens.append(words)
                tags.append(marks)
            if tokens:
                yield batch(tokens, tags)
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text at {bad_utf8(path, compression) or 'some line'}; "
                             "save it as UTF-8") from None
        except (OSError, pa.ArrowException) as exc:
            raise _corrupt(path, compression, exc) from None

    return Table(path, "conll", list(columns), None, batches())


# ---------------------------------------------------------------- JSON Lines
def _open_jsonl(path: Path, columns: list[str], roles: list[str], compression: str | None) -> Table:
    import pyarrow.json as pajson

    from defib.evidence.locate import jsonl_problem

    stream = pa.input_stream(str(path), compression=compression)
    read = pajson.ReadOptions(block_size=BLOCK_BYTES)
    try:
        reader = pajson.open_json(stream, read_options=read)
    except pa.ArrowInvalid as exc:
        stream.close()
        raise _located(lambda why=str(exc): jsonl_problem(path, compression, columns, why), path, compression) from None
    except (OSError, pa.ArrowException) as exc:
        stream.close()
        raise _corrupt(path, compression, exc) from None
    names = reader.schema.names
    check_columns(path, names, columns, roles)
    size = path.stat().st_size

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in reader:
                for name, role in zip(columns, roles):
                    if name not in batch.schema.names:
                        raise missing_column(path, name, batch.schema.names, role)
                yield pa.RecordBatch.from_arrays([batch.column(c) for c in columns], names=columns)
        except pa.ArrowInvalid as exc:
            raise _located(lambda why=str(exc): jsonl_problem(path, compression, columns, why), path, compression) from None
        except (OSError, pa.ArrowException) as exc:
            raise _corrupt(path, compression, exc) from None
        finally:
            stream.close()

    def done() -> float:
        return 0.0 if compression or stream.closed else min(1.0, stream.tell() / size)

    return Table(path, "jsonl", names, None, batches(), done)


# ---------------------------------------------------------------- Parquet / Arrow
def _open_parquet(path: Path, columns: list[str], roles: list[str]) -> Table:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({first_line(exc)})") from None
    names = pf.schema_arrow.names
    check_columns(path, names, columns, roles)
    read = {"n": 0}

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH, columns=columns):
                read["n"] += batch.num_rows
                yield batch
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{path}: the Parquet data is corrupt after row {read['n']} ({first_line(exc)})") from None

    total = pf.metadata.num_rows
    return Table(path, "parquet", names, total, batches(), lambda: read["n"] / total if total else 0.0)


def _open_saved_dataset(folder: Path, columns: list[str], roles: list[str]) -> Table:
    """A ``save_to_disk`` folder: ``state.json`` lists the ``.arrow`` files (Arrow IPC streams)."""
    if (folder / "dataset_dict.json").exists():
        try:
            splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        except (OSError, ValueError):
            splits = []
        hint = f"; point at one split, e.g. {folder / splits[0]}" if splits else ""
        raise InputError(f"{folder}: a DatasetDict folder with splits {', '.join(splits) or '(none listed)'}{hint}")
    files: list[Path] = []
    state = folder / "state.json"
    if state.exists():
        try:
            files = [folder / f["filename"] for f in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{state}: unreadable state.json ({first_line(exc)})") from None
    else:
        files = sorted(folder.glob("*.arrow"))
    if not files:
        raise InputError(f"{folder}: a directory with no dataset in it (expected a data file, or a folder "
                         "saved by datasets' save_to_disk with .arrow files)")
    missing = [f for f in files if not f.exists()]
    if missing:
        raise InputError(f"{missing[0]}: listed in {state.name} but missing")
    return _open_arrow_files(folder, files, columns, roles)


def _arrow_reader(file: Path) -> pa.ipc.RecordBatchStreamReader:
    source = pa.memory_map(str(file))
    try:
        return pa.ipc.open_stream(source)
    except (OSError, pa.ArrowException):
        try:
            reader = pa.ipc.open_file(source)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{file}: not an Arrow IPC file ({first_line(exc)})") from None
        return reader.to_reader() if hasattr(reader, "to_reader") else _file_batches(reader)


def _file_batches(reader: pa.ipc.RecordBatchFileReader):
    return (reader.get_batch(i) for i in range(reader.num_record_batches))


def _open_arrow_files(where: Path, files: list[Path], columns: list[str], roles: list[str]) -> Table:
    first = _arrow_reader(files[0])
    names = first.schema.names
    check_columns(where, names, columns, roles)
    done = {"files": 0}

    def batches() -> Iterator[pa.RecordBatch]:
        for i, file in enumerate(files):
            reader = first if i == 0 else _arrow_reader(file)
            try:
                for batch in reader:
                    gone = [(c, r) for c, r in zip(columns, roles) if c not in batch.schema.names]
                    if gone:
                        raise missing_column(file, gone[0][0], batch.schema.names, gone[0][1])
                    yield pa.RecordBatch.from_arrays([batch.column(c) for c in columns], names=columns)
            except (OSError, pa.ArrowException) as exc:
                raise InputError(f"{file}: corrupt Arrow data, truncated or damaged ({first_line(exc)})") from None
            done["files"] = i + 1

    return Table(where, "arrow", names, None, batches(), lambda: done["files"] / len(files))


def _corrupt(path: Path, compression: str | None, exc: BaseException) -> InputError:
    """A stream that fails below the parser: a truncated or damaged compressed file, or a read error."""
    what = f"the {compression} data is truncated or corrupt" if compression else "cannot read the file"
    return InputError(f"{path}: {what} ({first_line(exc)})")


def _located(problem: Callable[[], str], path: Path, compression: str | None) -> InputError:
    """The parse error located by a rescan; the rescan itself may hit a truncated or damaged stream."""
    try:
        return InputError(problem())
    except (OSError, pa.ArrowException) as exc:
        return _corrupt(path, compression, exc)


def first_line(exc: BaseException) -> str:
    """An exception's first line, at most 200 characters (its type's name when it says nothing)."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
