"""D101 (check): max_length cuts texts until distinct ones look alike.

Planted: a long shared prefix with a distinguishing suffix, cut at 16 tokens;
pairs whose
second sentences share their first words. Near-misses: the same texts at a
length that keeps them whole; a few long rows with distinct beginnings.
"""

from __future__ import annotations

from checkdata import check, find, texts

from defib.rules.base import Severity

PREFIX = "this review was written for the weekly film column and it says that "


def test_shared_prefix_cut_short_collides(tiny_model_dir):
    rows = [PREFIX + t for t in texts(200)]
    d = check(rows, [i % 2 for i in range(200)], tiny_model_dir, max_length=16)
    f = find(d, "D101")
    assert f is not None and f.severity == Severity.ERROR, d.findings
    assert f.evidence["colliding_share"] > 0.9
    assert f.evidence["colliding_texts"] == f.evidence["distinct_texts"] == 200
    assert f.evidence["rows_truncated"] == 200
    assert d.verdict == "at_risk"


def test_pairs_that_share_long_beginnings_collide(tiny_model_dir):
    firsts = [PREFIX] * 100
    seconds = ["the critic of the weekly column then adds that " + t for t in texts(100)]
    d = check(firsts, [float(i % 5) for i in range(100)], tiny_model_dir, text_pairs=seconds, max_length=16)
    f = find(d, "D101")
    assert f is not None and f.evidence["colliding_rows"] == 100
    assert "only_first" in f.fix


def test_texts_that_fit_are_silent(tiny_model_dir):
    rows = [PREFIX + t for t in texts(200)]
    d = check(rows, [i % 2 for i in range(200)], tiny_model_dir, max_length=64)
    assert find(d, "D101") is None
    assert d.extra["check"]["rows_truncated"] == 0


def test_a_few_long_distinct_rows_are_silent(tiny_model_dir):
    rows = texts(200)
    rows[:8] = [f"row {i} " + " ".join(["word"] * 80) for i in range(8)]  # 4% cut, each still distinct
    d = check(rows, [i % 2 for i in range(200)], tiny_model_dir)
    assert d.extra["check"]["rows_truncated"] == 8
    assert find(d, "D101") is None


def test_many_rows_cut_without_collisions_warn(tiny_model_dir):
    rows = [f"row {i} " + t + " " + " ".join(["word"] * 70) for i, t in enumerate(texts(100))]
    f = find(check(rows, [i % 2 for i in range(100)], tiny_model_dir), "D101")
    assert f is not None and f.severity == Severity.WARNING
    assert f.evidence["colliding_rows"] == 0 and f.evidence["truncated_share"] == 1.0



def test_copies_of_one_long_text_are_not_collisions(tiny_model_dir):
    rows = [PREFIX * 3] * 50 + texts(150)  # one text, cut, 50 times: duplicates, not distinct texts made alike
    d = check(rows, [i % 2 for i in range(200)], tiny_model_dir, max_length=16)
    f = find(d, "D101")
    assert f is None or f.evidence["colliding_texts"] == 0
