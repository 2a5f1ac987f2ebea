"""D106 (check): regression targets far from zero mean and unit scale.

Planted: scores 0..100. Near-miss: scores 0..5 (STS-B's scale).
"""

from __future__ import annotations

import random

from checkdata import check, find, texts


def test_percent_scores_fire(tiny_model_dir):
    scores = [random.Random(i).uniform(0, 100) for i in range(100)]
    f = find(check(texts(100), scores, tiny_model_dir), "D106")
    assert f is not None and f.cause == "data.target_scale"
    mean, std = f.evidence["target_mean"], f.evidence["target_std"]
    assert f"y = (y - {mean:.4g}) / {std:.4g}" in f.fix


def test_unit_scale_scores_are_silent(tiny_model_dir):
    scores = [random.Random(i).uniform(0, 5) for i in range(100)]
    assert find(check(texts(100), scores, tiny_model_dir), "D106") is None
