"""D110 (check): padding to max_length against dynamic padding.

Planted: short texts under max_length=64. Near-miss: texts that nearly fill
max_length (dynamic padding would save little).
"""

from __future__ import annotations

from checkdata import check, find, texts

from defib.rules.base import Severity


def test_short_texts_padded_to_max_are_noted(tiny_model_dir):
    f = find(check(texts(200, lo=3, hi=6), [i % 2 for i in range(200)], tiny_model_dir), "D110")
    assert f is not None and f.severity == Severity.INFO and f.cause is None
    e = f.evidence
    assert e["tokens_pad_to_max"] == 200 * 64 and e["tokens_dynamic"] < e["tokens_pad_to_max"] / 2


def test_texts_that_fill_max_length_are_silent(tiny_model_dir):
    rows = texts(200, lo=50, hi=56)
    d = check(rows, [i % 2 for i in range(200)], tiny_model_dir)
    assert find(d, "D110") is None
