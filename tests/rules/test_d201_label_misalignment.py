"""D201: planted: labels shuffled away from their texts; near-miss: the same rows with their own labels.

The model is MeanEmbedding (probing.py), which learns the word-presence task in a few steps, so the
known answer does not hinge on how a tiny unpretrained BERT generalises from a few dozen rows.
"""

from __future__ import annotations

from helpers import find
from probing import PERMUTATION_BUDGET, MeanEmbedding, probe, shuffled_labels, word_rows

ONLY = ("overfit", "permutation")


def test_shuffled_labels_fire(tiny_model_dir):
    rows = shuffled_labels(word_rows(128, seed=0), seed=0)
    sig, d = probe(MeanEmbedding(), tiny_model_dir, rows, only=ONLY, budget=PERMUTATION_BUDGET)
    assert sig.overfit.reached_at is not None  # the model can learn: the labels are what is wrong
    f = find(d, "D201")
    assert f is not None and f.cause == "data.label_misalignment", (d.findings, sig.permutation)


def test_aligned_labels_are_silent(tiny_model_dir):
    sig, d = probe(MeanEmbedding(), tiny_model_dir, word_rows(128, seed=0), only=ONLY,
                   budget=PERMUTATION_BUDGET)
    assert find(d, "D201") is None, sig.permutation
