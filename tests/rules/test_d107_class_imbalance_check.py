"""D107 (check): classes so imbalanced that an unweighted loss invites the majority.

Planted: 90/10 classes; a multilabel column with a rare label. Near-miss: 60/40.
"""

from __future__ import annotations

from checkdata import check, find, texts


def test_ninety_ten_warns_with_weights(tiny_model_dir):
    labels = ["fresh"] * 90 + ["rotten"] * 10
    f = find(check(texts(100), labels, tiny_model_dir), "D107")
    assert f is not None and f.cause == "loss.class_imbalance"
    assert f.evidence["class_weights"] == {"fresh": round(100 / 180, 3), "rotten": 5.0}


def test_rare_multilabel_label_warns(tiny_model_dir):
    labels = [[1, 1 if i % 20 == 0 else 0] for i in range(100)]
    labels[0][0] = 0
    f = find(check(texts(100), labels, tiny_model_dir), "D107")
    assert f is not None and "pos_weight" in f.evidence


def test_sixty_forty_is_silent(tiny_model_dir):
    assert find(check(texts(100), [0] * 60 + [1] * 40, tiny_model_dir), "D107") is None
