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


def test_too_few_held_out_rows_are_not_judged():
    from defib.rules.data.d201_label_misalignment import LabelsDoNotBelong
    from defib.signals.run import Signals
    from defib.signals.probe import Overfit, Permutation, ProbeSignals

    def signals(held_out: int) -> Signals:
        perm = Permutation(rows=2 * held_out, held_out=held_out, steps=16, start_loss=1.0, real_loss=1.02,
                           permuted_loss=1.04, baseline=1.0, lr=1e-4)
        fit = Overfit(rows=8, steps=12, max_steps=40, losses=[1.0, 0.05], baseline=1.0, goal=0.1, reached_at=12,
                      lr=1e-4)
        return Signals(probe=ProbeSignals(task="regression", rows=2 * held_out, source="t", permutation=perm,
                                          overfit=fit))

    rule = LabelsDoNotBelong()
    assert rule.check(signals(rule.min_held_out)) is not None
    assert rule.check(signals(rule.min_held_out - 1)) is None
