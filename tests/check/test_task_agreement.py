"""``defib check``, ``probe`` and ``train`` infer the same task from the same label column.

They once followed three rules: a file of 50 distinct whole-number scores was
a regression to ``defib check`` and a 50-class classification to ``defib
train``. Now all three ask :mod:`defib.evidence.task`; each case below is read
from a file by each command's own reading path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from checkrun import write_csv

import defib
from defib.evidence.probes.data import ProbeInputError
from defib.evidence.probes.sample_file import read_rows
from defib.train.pipeline import TrainOptions, prepare

ROWS = 120

CASES = {  # name: (label of row i, file format, task)
    "50 distinct whole-number scores": (lambda i: i % 50, "csv", "regression"),
    "2 integer classes": (lambda i: i % 2, "csv", "classification"),
    "5 integer classes": (lambda i: i % 5, "csv", "classification"),
    "classes written 0.0 / 1.0": (lambda i: float(i % 2), "jsonl", "classification"),
    "negative whole numbers, 3 values": (lambda i: i % 3 - 1, "csv", "classification"),
    "float scores": (lambda i: round(i / 7, 3), "csv", "regression"),
    "float scores in JSON": (lambda i: i / 7, "jsonl", "regression"),
    "string labels": (lambda i: ["neg", "neu", "pos"][i % 3], "csv", "classification"),
    "booleans": (lambda i: i % 3 == 0, "jsonl", "classification"),
    "lists of label names": (lambda i: [["a"], ["b"], ["a", "b"]][i % 3], "jsonl", "multilabel"),
}


def _write(folder: Path, label, fmt: str) -> Path:
    rows = [(f"row number {i} says something", label(i)) for i in range(ROWS)]
    if fmt == "csv":
        return write_csv(folder / "data.csv", rows)
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_check_probe_and_train_infer_the_same_task(name, tmp_path, tiny_model_dir):
    label, fmt, expected = CASES[name]
    data = _write(tmp_path, label, fmt)

    checked = defib.check_file(data, text="text", label="label", model=str(tiny_model_dir))
    assert checked.extra["check"]["task"] == expected and checked.extra["check"]["task_inferred"]

    prep = prepare(TrainOptions(data=data, text="text", label="label", model=str(tiny_model_dir),
                                out=tmp_path / "model", check=False, progress=False))
    assert prep.space.task == expected

    if expected == "multilabel":  # the probe has no multilabel head: it says so instead of guessing
        with pytest.raises(ProbeInputError, match="multilabel"):
            read_rows(data, "text", "label")
        return
    _, labels, task = read_rows(data, "text", "label")
    assert task == expected
    if task == "classification":
        assert all(isinstance(y, int) and y >= 0 for y in labels)  # class ids the probe's head can index


def test_multi_hot_lists_are_multilabel_to_check_and_train(tmp_path, tiny_model_dir):
    data = _write(tmp_path, lambda i: [[1, 0, 0], [0, 1, 1], [1, 1, 0]][i % 3], "jsonl")
    checked = defib.check_file(data, text="text", label="label", model=str(tiny_model_dir))
    assert checked.extra["check"]["task"] == "multilabel"
    prep = prepare(TrainOptions(data=data, text="text", label="label", model=str(tiny_model_dir),
                                out=tmp_path / "model", check=False, progress=False))
    assert prep.space.task == "multilabel"


def test_the_reason_names_the_rule(tmp_path, tiny_model_dir):
    data = _write(tmp_path, CASES["50 distinct whole-number scores"][0], "csv")
    checked = defib.check_file(data, text="text", label="label", model=str(tiny_model_dir))
    assert checked.extra["check"]["task_reason"] == "the labels are whole numbers with more than 20 distinct values"
