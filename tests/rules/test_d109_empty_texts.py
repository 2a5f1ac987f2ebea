"""D109 (check): empty or whitespace-only texts.

Planted: 10% empty texts (a warning); one in 200 (a note). Near-miss: texts
of one character.
"""

from __future__ import annotations

from checkdata import check, find, texts

from defib.rules.base import Severity


def test_many_empty_texts_warn(tiny_model_dir):
    rows = texts(100)
    rows[5::10] = ["", "   ", "\t", None, "", "", " ", "", "", ""]
    f = find(check(rows, [i % 2 for i in range(100)], tiny_model_dir), "D109")
    assert f is not None and f.severity == Severity.WARNING
    assert f.evidence["empty_rows"] == 10 and f.evidence["example_rows"][:2] == [6, 16]


def test_one_empty_text_is_a_note(tiny_model_dir):
    rows = texts(200)
    rows[7] = ""
    f = find(check(rows, [i % 2 for i in range(200)], tiny_model_dir), "D109")
    assert f is not None and f.severity == Severity.INFO and f.evidence["example_rows"] == [8]


def test_one_character_texts_are_silent(tiny_model_dir):
    rows = [chr(ord("a") + i % 26) for i in range(100)]
    assert find(check(rows, [i % 2 for i in range(100)], tiny_model_dir), "D109") is None
