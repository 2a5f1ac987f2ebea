"""The bad-input corpus of ``defib check``: every malformed input gets one line, exit 2, no traceback.

Each case builds its input in a fresh folder and returns the arguments and
the fragments the error line must contain: the file, and the row and column
where they apply. Every case also checks that nothing was written next to
the input.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from checkrun import defib_check, write_csv

GOOD = [(f"a short text number {i}", i % 2) for i in range(40)]
CASES: dict[str, Callable[[Path, Path], tuple[list[str], list[str]]]] = {}


def case(fn: Callable[[Path, Path], tuple[list[str], list[str]]]):
    CASES[fn.__name__] = fn
    return fn


def args(path: Path, model: Path, *extra: str, text: str = "text", label: str = "label") -> list[str]:
    return [str(path), "--text", text, "--label", label, "--model", str(model), *extra]


def raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- the file itself
@case
def empty_file(d, m):
    return args(raw(d / "data.csv", b""), m), ["data.csv", "empty"]


@case
def header_only(d, m):
    return args(raw(d / "data.csv", b"text,label\n"), m), ["data.csv", "no data rows"]


@case
def missing_file(d, m):
    return args(d / "nope.csv", m), ["nope.csv", "no such file"]


@case
def directory_without_data(d, m):
    (d / "folder").mkdir()
    (d / "folder" / "notes.txt").write_text("hello")
    return args(d / "folder", m), ["folder", "no dataset"]


@case
def dataset_dict_folder(d, m):
    (d / "dd").mkdir()
    (d / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    return args(d / "dd", m), ["dd", "DatasetDict", "train"]


@case
def unknown_extension(d, m):
    return args(raw(d / "data.xlsx", b"PK\x03\x04rest"), m), ["data.xlsx", "unknown file type", "zip"]


@case
def gzip_named_csv(d, m):
    return args(raw(d / "data.csv", gzip.compress(b"text,label\nhello,1\n")), m), ["data.csv", "gzip", "data.csv.gz"]


@case
def csv_gz_not_compressed(d, m):
    return args(raw(d / "data.csv.gz", b"text,label\nhello,1\n"), m), ["data.csv.gz", "not gzip-compressed"]


@case
def utf16_file(d, m):
    return args(raw(d / "data.csv", "text,label\nhello,1\n".encode("utf-16")), m), ["data.csv", "UTF-16"]


@case
def not_utf8(d, m):
    return args(raw(d / "data.csv", b"text,label\nhello,1\nh\xe9llo,0\n"), m), ["data.csv", "line 3", "UTF-8"]


@case
def not_parquet(d, m):
    return args(raw(d / "data.parquet", b"text,label\nhello,1\n"), m), ["data.parquet", "not a Parquet file"]


@case
def truncated_gzip(d, m):
    packed = gzip.compress(("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(3000))).encode())
    return args(raw(d / "data.csv.gz", packed[: len(packed) // 2]), m), ["data.csv.gz", "gzip data is truncated"]


@case
def corrupt_arrow_in_saved_dataset(d, m):
    folder = d / "saved"
    folder.mkdir()
    table = pa.table({"text": [t for t, _ in GOOD], "label": [y for _, y in GOOD]})
    with pa.ipc.new_stream(str(folder / "data-00000-of-00001.arrow"), table.schema) as w:
        w.write_table(table)
    whole = (folder / "data-00000-of-00001.arrow").read_bytes()
    (folder / "data-00000-of-00001.arrow").write_bytes(whole[: len(whole) // 2])
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    return args(folder, m), ["data-00000-of-00001.arrow", "corrupt Arrow data"]


@case
def fifty_megabyte_line_without_newline(d, m):
    return args(raw(d / "data.csv", b"text,label\n" + b"x" * (50 << 20)), m), ["data.csv", "row 1 (line 2)", "1 fields"]


@case
def fifty_megabyte_header(d, m):
    return args(raw(d / "data.csv", b"h" * (50 << 20)), m), ["data.csv", "first line is longer than 1 MB"]


# ---------------------------------------------------------------- columns and delimiters
@case
def missing_column(d, m):
    return args(write_csv(d / "data.csv", GOOD), m, text="txt"), ["data.csv", "'txt'", "did you mean 'text'"]


@case
def misspelt_label_case(d, m):
    return args(write_csv(d / "data.csv", GOOD), m, label="Label"), ["data.csv", "'Label'", "did you mean 'label'"]


@case
def tab_separated_named_csv(d, m):
    body = "text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in GOOD)
    return args(raw(d / "data.csv", body.encode()), m), ["data.csv", "tab-separated", "--delimiter"]


@case
def semicolon_separated(d, m):
    body = "text;label\n" + "".join(f"{t};{y}\n" for t, y in GOOD)
    return args(raw(d / "data.csv", body.encode()), m), ["data.csv", "semicolon-separated"]


@case
def duplicate_header(d, m):
    return args(raw(d / "data.csv", b"text,label,text\na,1,b\n"), m), ["data.csv", "'text' more than once"]


@case
def duplicate_parquet_column(d, m):
    table = pa.Table.from_arrays([pa.array(["a", "b"]), pa.array([0, 1]), pa.array([1, 0])], names=["text", "label", "label"])
    pq.write_table(table, d / "data.parquet")
    return args(d / "data.parquet", m), ["data.parquet", "'label' more than once"]


@case
def same_column_twice(d, m):
    return args(write_csv(d / "data.csv", GOOD), m, label="text"), ["same column is given twice"]


@case
def text_column_holds_numbers(d, m):
    pq.write_table(pa.table({"text": list(range(40)), "label": [i % 2 for i in range(40)]}), d / "data.parquet")
    return args(d / "data.parquet", m), ["data.parquet", "'text'", "not text"]


@case
def bad_delimiter_option(d, m):
    return args(write_csv(d / "data.csv", GOOD), m, "--delimiter", "::"), ["--delimiter", "one character"]


# ---------------------------------------------------------------- rows
@case
def ragged_row_too_many(d, m):
    return args(raw(d / "data.csv", b"text,label\nhello,1\nworld,0,extra\n"), m), ["data.csv", "row 2 (line 3)", "3 fields"]


@case
def ragged_row_too_few(d, m):
    return args(raw(d / "data.csv", b"text,label\nhello,1\nworld\nagain,1\n"), m), ["data.csv", "row 2 (line 3)", "1 fields"]


@case
def quote_never_closes(d, m):
    body = b"text,label\nhello,1\n\"world,0\nagain,1\nmore,0\n"
    return args(raw(d / "data.csv", body), m), ["data.csv", "row 2 (line 3)", "never closes"]


@case
def ten_megabyte_text(d, m):
    body = b"text,label\nhello,1\n" + b"x" * (10 << 20) + b",0\n"
    return args(raw(d / "data.csv", body), m), ["data.csv", "row 2", "column 'text'", "characters"]


# ---------------------------------------------------------------- labels
@case
def nan_label(d, m):
    return args(write_csv(d / "data.csv", [("a", "1.5"), ("b", "nan"), ("c", "2.5")]), m), \
        ["data.csv", "row 2, column 'label'", "nan"]


@case
def inf_label(d, m):
    return args(write_csv(d / "data.csv", [("a", "1.5"), ("b", "2"), ("c", "inf")]), m), \
        ["data.csv", "row 3, column 'label'", "inf"]


@case
def empty_label(d, m):
    return args(write_csv(d / "data.csv", [("a", "1"), ("b", ""), ("c", "0")]), m), \
        ["data.csv", "row 2, column 'label'", "empty"]


@case
def mixed_label_types(d, m):
    return args(write_csv(d / "data.csv", [("a", "1"), ("b", "0"), ("c", "positive"), ("d", "1")]), m), \
        ["data.csv", "mixes numbers and text", "row 3"]


@case
def label_column_is_text(d, m):
    rows = [(f"text {i}", f"a unique sentence {i}") for i in range(10_050)]
    return args(write_csv(d / "data.csv", rows), m), ["data.csv", "'label'", "not a label"]


@case
def parquet_nan_label(d, m):
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": [0.5, 1.5, float("nan")]}), d / "data.parquet")
    return args(d / "data.parquet", m), ["data.parquet", "row 3, column 'label'"]


@case
def parquet_null_label(d, m):
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": [1, None, 0]}), d / "data.parquet")
    return args(d / "data.parquet", m), ["data.parquet", "row 2, column 'label'", "null"]


@case
def regression_task_on_text_labels(d, m):
    return args(write_csv(d / "data.csv", [("a", "pos"), ("b", "neg")] * 10), m, "--task", "regression"), \
        ["--task regression", "'label'", "text"]


@case
def multilabel_task_on_scalars(d, m):
    return args(write_csv(d / "data.csv", GOOD), m, "--task", "multilabel"), ["--task multilabel", "list labels"]


@case
def unknown_task(d, m):
    return args(write_csv(d / "data.csv", GOOD), m, "--task", "ranking"), ["--task", "ranking"]


# ---------------------------------------------------------------- JSON Lines
@case
def jsonl_broken_line(d, m):
    body = b'{"text": "a", "label": 1}\n{"text": "b" "label": 0}\n'
    return args(raw(d / "data.jsonl", body), m), ["data.jsonl", "row 2 (line 2)", "not valid JSON"]


@case
def jsonl_mixed_label_types(d, m):
    body = b'{"text": "a", "label": 1}\n{"text": "b", "label": "x"}\n'
    return args(raw(d / "data.jsonl", body), m), ["data.jsonl", "row 2 (line 2), column 'label'", "text", "number"]


@case
def json_array_not_lines(d, m):
    return args(raw(d / "data.json", b'[{"text": "a", "label": 1},\n {"text": "b", "label": 0}]\n'), m), \
        ["data.json", "JSON array"]


@case
def jsonl_null_label(d, m):
    body = b'{"text": "a", "label": 1}\n{"text": "b", "label": null}\n{"text": "c", "label": 0}\n'
    return args(raw(d / "data.jsonl", body), m), ["data.jsonl", "row 2, column 'label'"]


@case
def jsonl_empty_label_list(d, m):
    body = b'{"text": "a", "label": [1, 0]}\n{"text": "b", "label": []}\n'
    return args(raw(d / "data.jsonl", body), m), ["data.jsonl", "row 2, column 'label'", "empty list"]


@case
def parquet_fifty_megabyte_text(d, m):
    pq.write_table(pa.table({"text": ["a", "x" * (50 << 20)], "label": [1, 0]}), d / "data.parquet")
    return args(d / "data.parquet", m), ["data.parquet", "row 2, column 'text'", "52,428,800 characters"]


@case
def jsonl_ten_megabyte_text(d, m):
    body = b'{"text": "a", "label": 1}\n{"text": "' + b"x" * (10 << 20) + b'", "label": 0}\n'
    return args(raw(d / "data.jsonl", body), m), ["data.jsonl", "row 2 (line 2), column 'text'", "characters"]


# ---------------------------------------------------------------- token-level labels (CoNLL, tag lists)
TOKEN_ROW = b'{"tokens": ["EU", "rejects", "it"], "tags": ["B-ORG", "O", "O"]}\n'


@case
def conll_line_without_tag(d, m):
    return args(raw(d / "data.conll", b"EU B-ORG\nrejects\n\n"), m), ["data.conll", "line 2", "'rejects'", "no tag"]


@case
def conll_empty(d, m):
    return args(raw(d / "data.conll", b""), m), ["data.conll", "empty"]


@case
def conll_only_docstart(d, m):
    return args(raw(d / "data.conll", b"-DOCSTART- -X- O\n\n\n"), m), ["data.conll", "no data rows"]


@case
def conll_with_text_pair(d, m):
    return args(raw(d / "data.conll", b"EU B-ORG\n"), m, "--text-pair", "second"), ["data.conll", "--text-pair"]


@case
def tags_not_a_list(d, m):
    body = b'{"tokens": ["EU", "rejects"], "tags": "B-ORG O"}\n' * 2
    return args(raw(d / "data.jsonl", body), m, text="tokens", label="tags"), \
        ["data.jsonl", "row 1", "'tags'", "not a list of tags"]


@case
def tag_with_a_fraction(d, m):
    body = b'{"tokens": ["EU"], "tags": [0]}\n{"tokens": ["EU", "it"], "tags": [0, 1.5]}\n'
    return args(raw(d / "data.jsonl", body), m, text="tokens", label="tags"), ["data.jsonl", "row 2", "1.5", "whole"]


@case
def tag_missing(d, m):
    body = TOKEN_ROW + b'{"tokens": ["EU", "it"], "tags": ["O", null]}\n'
    return args(raw(d / "data.jsonl", body), m, text="tokens", label="tags"), ["data.jsonl", "row 2", "missing tag"]


@case
def token_ids_for_words(d, m):
    body = b'{"tokens": [101, 2054, 102], "tags": ["O", "O", "O"]}\n'
    return args(raw(d / "data.jsonl", body), m, text="tokens", label="tags"), ["data.jsonl", "'tokens'", "not words"]


@case
def task_token_on_sentence_rows(d, m):
    return args(write_csv(d / "data.csv", GOOD), m, "--task", "token_classification"), \
        ["data.csv", "--task token_classification", "list of tokens"]


@case
def task_multilabel_on_token_rows(d, m):
    return args(raw(d / "data.jsonl", TOKEN_ROW * 3), m, "--task", "multilabel", text="tokens", label="tags"), \
        ["data.jsonl", "--task multilabel", "lists of tokens"]


# ---------------------------------------------------------------- model
@case
def model_path_missing(d, m):
    return args(write_csv(d / "data.csv", GOOD), d / "no_such_model"), ["no_such_model", "no such model folder"]


@case
def hub_name_offline(d, m):
    return args(write_csv(d / "data.csv", GOOD), Path("some-org/some-model-not-cached")), \
        ["some-org/some-model-not-cached", "offline"]


@case
def model_folder_without_tokenizer(d, m):
    (d / "empty_model").mkdir()
    return args(write_csv(d / "data.csv", GOOD), d / "empty_model"), ["empty_model", "cannot load a tokenizer"]


@case
def max_length_beyond_positions(d, m):
    return args(write_csv(d / "data.csv", GOOD), m, "--max-length", "1024"), ["--max-length 1024", "64 position"]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_one_line_and_exit_2(name, tmp_path, tiny_model_dir):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    argv, fragments = CASES[name](data_dir, tiny_model_dir)
    before = sorted(os.listdir(data_dir))
    r = defib_check(*argv)
    assert r.exception is None, r
    assert r.code == 2, r
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r
    assert lines[0].startswith("defib: error: "), r
    assert "Traceback" not in r.stderr + r.stdout
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert sorted(os.listdir(data_dir)) == before, "defib wrote next to the input"


@pytest.mark.parametrize("label, task", [("1", "classification"), ("2.5", "regression")])
def test_a_one_row_file_is_not_healthy(label, task, tmp_path, tiny_model_dir):
    """One row is one label: nothing to learn (D104), however clean the row is."""
    data = write_csv(tmp_path / "data.csv", [("a perfectly fine sentence", label)])
    r = defib_check(*args(data, tiny_model_dir), json_path=tmp_path / "r.json")
    assert r.code == 1, r
    assert r.report["verdict"] != "healthy" and r.report["task"] == task
    d104 = [f for f in r.report["findings"] if f["code"] == "D104"]
    assert d104 and d104[0]["severity"] == "error" and d104[0]["message"].startswith("The only "), r.report["findings"]
