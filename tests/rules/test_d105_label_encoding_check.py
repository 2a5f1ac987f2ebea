"""D105 (check): labels encoded wrongly for the head and loss.

Planted: 1-based ids; negative ids; ids beyond the config's num_labels;
whole numbers written as floats; one number spelled two ways; fractional
values under --task classification. Near-misses: 0-based ids; the ignore
index -100 among valid ids.
"""

from __future__ import annotations

from checkdata import check, find, model_copy, texts

from defib.rules.base import Severity


def test_one_based_ids_warn(tiny_model_dir):
    f = find(check(texts(90), [1 + i % 3 for i in range(90)], tiny_model_dir), "D105")
    assert f is not None and f.severity == Severity.WARNING and "1-based" in f.message


def test_negative_ids_fire(tiny_model_dir):
    f = find(check(texts(90), [i % 3 - 1 for i in range(90)], tiny_model_dir), "D105")
    assert f is not None and f.severity == Severity.ERROR and "-1" in f.message


def test_ids_beyond_num_labels_fire(tiny_model_dir, tmp_path):
    head = model_copy(tiny_model_dir, tmp_path / "two_labels", id2label={"0": "neg", "1": "pos"},
                      label2id={"neg": 0, "pos": 1})
    f = find(check(texts(90), [i % 3 for i in range(90)], head), "D105")
    assert f is not None and f.severity == Severity.ERROR and "num_labels=2" in f.message


def test_ids_written_as_floats_warn(tiny_model_dir):
    f = find(check(texts(90), [float(i % 3) for i in range(90)], tiny_model_dir), "D105")
    assert f is not None and "floats" in f.message


def test_one_number_spelled_two_ways_warns(tiny_model_dir):
    labels = ["1" if i % 4 == 0 else "1.0" if i % 4 == 1 else "0" for i in range(80)]
    f = find(check(texts(80), labels, tiny_model_dir), "D105")
    assert f is not None and any("written 2 ways" in p for p in f.evidence["problems"])


def test_fractional_values_as_classes_fire(tiny_model_dir):
    f = find(check(texts(90), [0.5 * (i % 5) for i in range(90)], tiny_model_dir, task="classification"), "D105")
    assert f is not None and f.severity == Severity.ERROR and "fractional" in f.message


def test_zero_based_ids_are_silent(tiny_model_dir):
    assert find(check(texts(90), [i % 3 for i in range(90)], tiny_model_dir), "D105") is None


def test_ignore_index_is_silent(tiny_model_dir):
    labels = [i % 2 for i in range(90)]
    labels[::10] = [-100] * 9
    assert find(check(texts(90), labels, tiny_model_dir), "D105") is None
