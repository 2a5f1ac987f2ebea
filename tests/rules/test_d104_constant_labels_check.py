"""D104 (check): the labels are (nearly) one value.

Planted: one class; zero-spread targets; 95% of targets one value. Near-misses:
a strongly imbalanced but real two-class column; targets with a small real spread.
"""

from __future__ import annotations

from checkdata import check, find, texts

from defib.rules.base import Severity


def test_one_class_fires(tiny_model_dir):
    f = find(check(texts(80), [1] * 80, tiny_model_dir), "D104")
    assert f is not None and f.severity == Severity.ERROR and f.evidence["label_counts"] == {"1": 80}


def test_one_text_class_fires(tiny_model_dir):
    f = find(check(texts(80), ["positive"] * 80, tiny_model_dir), "D104")
    assert f is not None and "'positive'" in f.message


def test_zero_spread_targets_fire(tiny_model_dir):
    f = find(check(texts(80), [2.5] * 80, tiny_model_dir, task="regression"), "D104")
    assert f is not None and f.severity == Severity.ERROR


def test_one_dominant_target_value_warns(tiny_model_dir):
    scores = [0.0] * 95 + [1.5, 2.5, 3.5, 4.5, 0.5]
    f = find(check(texts(100), scores, tiny_model_dir), "D104")
    assert f is not None and f.severity == Severity.WARNING and f.evidence["share"] == 0.95


def test_imbalanced_but_real_classes_are_silent(tiny_model_dir):
    assert find(check(texts(100), [0] * 92 + [1] * 8, tiny_model_dir), "D104") is None


def test_small_real_spread_is_silent(tiny_model_dir):
    scores = [3.0 + 0.01 * (i % 7) for i in range(100)]
    assert find(check(texts(100), scores, tiny_model_dir), "D104") is None
