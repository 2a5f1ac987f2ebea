"""D103 (check): labels grouped or sorted in file order.

Planted: classes in two blocks; regression targets sorted. Near-misses: the
same labels in a random order; a file with a weak but significant order
effect (alternating blocks of 2 in a noisy sequence) below the effect size.
Also checks the statistic: its exact mean and variance against permutations.
"""

from __future__ import annotations

import random

import numpy as np
from checkdata import check, find, texts

from defib.evidence.preflight.labels import same_neighbour_test


def test_classes_in_blocks_fire(tiny_model_dir):
    labels = [0] * 150 + [1] * 150
    f = find(check(texts(300), labels, tiny_model_dir), "D103")
    assert f is not None and f.cause == "data.unshuffled"
    assert f.evidence["p_value"] < 1e-6 and f.evidence["effect"] > 0.9


def test_sorted_targets_fire(tiny_model_dir):
    rng = random.Random(1)
    scores = sorted(rng.uniform(0, 5) for _ in range(300))
    f = find(check(texts(300), scores, tiny_model_dir), "D103")
    assert f is not None and f.evidence["statistic"] == "lag-1 autocorrelation"


def test_shuffled_labels_are_silent(tiny_model_dir):
    labels = [0] * 150 + [1] * 150
    random.Random(0).shuffle(labels)
    scores = [random.Random(i).uniform(0, 5) for i in range(300)]
    assert find(check(texts(300), labels, tiny_model_dir), "D103") is None
    assert find(check(texts(300), scores, tiny_model_dir), "D103") is None


def test_weak_order_effect_is_silent():
    rng = random.Random(3)
    labels = [rng.randrange(3) for _ in range(200_000)]
    for i in range(0, len(labels) - 1, 10):  # every 10th row copies its neighbour: a small real effect
        labels[i + 1] = labels[i]
    counts = np.bincount(labels).tolist()
    same = sum(a == b for a, b in zip(labels, labels[1:]))
    o = same_neighbour_test(counts, same)
    assert o.p_value < 1e-6 and o.effect < 0.2  # significant, yet too small to steer training


def test_same_neighbour_moments_match_permutations():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 15 + [2] * 5)
    sims = np.array([np.count_nonzero(p[1:] == p[:-1]) for p in (rng.permutation(labels) for _ in range(20_000))])
    o = same_neighbour_test([30, 15, 5], 0)
    n = 50
    mean = o.expected * (n - 1)
    sd = (mean - 0) / o.z * -1  # z = (0 - mean) / sd
    assert abs(sims.mean() - mean) < 0.05
    assert abs(sims.std() - sd) / sd < 0.03
