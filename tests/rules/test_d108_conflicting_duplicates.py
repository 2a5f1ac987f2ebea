"""D108 (check): the same text with different labels.

Planted: 10% of rows repeat a text with the opposite label. Near-misses:
duplicates that agree; regression duplicates whose targets differ a little.
"""

from __future__ import annotations

from checkdata import check, find, texts


def test_conflicting_copies_warn(tiny_model_dir):
    rows, labels = texts(100), [i % 2 for i in range(100)]
    rows += rows[:10]
    labels += [1 - y for y in labels[:10]]
    f = find(check(rows, labels, tiny_model_dir), "D108")
    assert f is not None and f.evidence["conflicting_rows"] == 20 and f.evidence["conflicting_groups"] == 10
    assert f.evidence["example_rows"] == [1, 101]


def test_agreeing_copies_are_silent(tiny_model_dir):
    rows, labels = texts(100), [i % 2 for i in range(100)]
    d = check(rows + rows[:10], labels + labels[:10], tiny_model_dir)
    assert find(d, "D108") is None


def test_nearly_equal_regression_targets_are_silent(tiny_model_dir):
    rows, scores = texts(100), [float(i % 5) for i in range(100)]
    d = check(rows + rows[:10], scores + [s + 0.1 for s in scores[:10]], tiny_model_dir)
    assert find(d, "D108") is None
