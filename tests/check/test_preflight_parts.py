"""The preflight's parts: keyed samples stay bounded and unbiased, the Python API's errors and edge cases."""

from __future__ import annotations

import numpy as np
import pytest

import defib
from defib.evidence.preflight.sampling import KeyedSample, UniformSample, groups
from defib.stages.check import _progress


def test_keyed_sample_stays_bounded_keeps_groups_whole_and_estimates_counts():
    rng = np.random.default_rng(0)
    ks = KeyedSample(size=10_000)
    keys_all = rng.integers(-2**62, 2**62, size=50_000)  # 50k distinct keys, each twice
    for part in np.array_split(np.concatenate([keys_all, keys_all]), 40):
        ks.add(part, np.zeros(len(part)), np.arange(len(part)))
        assert ks.count <= 10_000
    keys, _, _ = ks.arrays()
    starts, sizes = groups(keys)
    assert set(sizes.tolist()) == {2}  # a kept key keeps both of its rows
    assert abs(len(starts) * ks.scale - 50_000) / 50_000 < 0.1


def test_uniform_sample_is_bounded_and_uniform():
    us = UniformSample(size=1000)
    for start in range(0, 100_000, 5000):
        us.add(np.arange(start, start + 5000, dtype=float))
    assert len(us.values) == 1000
    assert 40_000 < us.values.mean() < 60_000  # not only the first or last rows


def test_check_data_errors_name_the_row(tiny_model_dir):
    with pytest.raises(defib.InputError, match="row 3, column 'labels'"):
        defib.check_data(["a", "b", "c"], [0.5, 1.0, float("nan")], model=str(tiny_model_dir))
    with pytest.raises(defib.InputError, match="3 texts but 2 labels"):
        defib.check_data(["a", "b", "c"], [0, 1], model=str(tiny_model_dir))
    with pytest.raises(defib.InputError, match="texts cannot be read"):
        defib.check_data(["a", 2, "c"], [0, 1, 0], model=str(tiny_model_dir))


def test_check_data_on_no_rows_is_inconclusive(tiny_model_dir):
    d = defib.check_data([], [], model=str(tiny_model_dir))
    assert d.verdict == "inconclusive" and d.extra["check"]["rows"] == 0


def test_check_data_accepts_numpy_labels_and_a_tokenizer_object(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    d = defib.check_data([f"text {i}" for i in range(30)], np.arange(30) % 2, model=str(tiny_model_dir), tokenizer=tok)
    assert d.task == "classification" and d.verdict == "healthy"


def test_progress_bar_draws_on_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    bar = _progress(True)
    with bar as tick:
        assert bar.bar is None  # nothing drawn before the first rows are read
        for rows in (10, 50, 100):
            tick(rows, rows / 100)
        task = bar.bar.tasks[0]
        assert task.completed == pytest.approx(1.0) and task.fields["rows"] == 100
    off = _progress(False)
    with off as tick:
        tick(5, 0.5)
    assert not off.enabled and off.bar is None  # switched off: nothing drawn


def test_file_order_statistics_carry_across_batches():
    import pyarrow as pa

    from defib.evidence.preflight.labels import LabelCounter

    rng = np.random.default_rng(1)
    y = np.cumsum(rng.normal(size=3000)) * 0.1 + rng.normal(size=3000)  # autocorrelated targets
    lc = LabelCounter("y", "test")
    for part in np.array_split(y, 7):
        lc.update(pa.array(part), 1)
    o = lc.order("regression")
    d = y - y.mean()
    assert o.observed == pytest.approx(float(d[1:] @ d[:-1] / (d @ d)), rel=1e-9)
    classes = rng.integers(0, 3, size=3000)
    lc = LabelCounter("c", "test")
    for part in np.array_split(classes, 7):
        lc.update(pa.array(part), 1)
    o = lc.order("classification")
    assert o.observed * 2999 == pytest.approx(np.count_nonzero(classes[1:] == classes[:-1]))
    assert o.p_value > 1e-3  # a random order is not called grouped
