"""defib's entity F1 (``defib.train.metrics.tokens``) against seqeval's, the metric NER papers and the transformers
examples report: the same precision, recall and F1 on random tag sequences, malformed ones included (an I tag
after O, a type change inside an entity, E and S tags of IOBES). defib keeps its own span reader so that seqeval
is not a runtime dependency; this test is what makes that safe."""

from __future__ import annotations

import random

import pytest

from defib.train.metrics import tokens

seqeval = pytest.importorskip("seqeval.metrics")

IOB2 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
IOBES = IOB2 + ["E-PER", "S-PER", "E-LOC", "S-LOC"]


@pytest.mark.parametrize("tagset", [IOB2, IOBES], ids=["iob2", "iobes"])
def test_entity_scores_agree_with_seqeval(tagset):
    rng = random.Random(len(tagset))
    for _ in range(200):
        true = [[rng.choice(tagset) for _ in range(rng.randint(1, 12))] for _ in range(8)]
        pred = [[t if rng.random() < 0.7 else rng.choice(tagset) for t in sentence] for sentence in true]
        ours = tokens(pred, true, "O")
        theirs = {"entity_f1": seqeval.f1_score(true, pred), "entity_precision": seqeval.precision_score(true, pred),
                  "entity_recall": seqeval.recall_score(true, pred)}
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(value, abs=1e-12), (key, true, pred)


def test_all_o_predictions_score_zero_like_seqeval():
    """The collapse defib watches for: every word tagged O scores 0 entity F1 in both, at 80%+ token accuracy."""
    true = [["O", "O", "B-PER", "I-PER", "O", "O", "O", "O", "O", "O"]] * 4
    pred = [["O"] * 10] * 4
    ours = tokens(pred, true, "O")
    assert ours["entity_f1"] == seqeval.f1_score(true, pred) == 0.0
    assert ours["token_accuracy"] == 0.8 and ours["pred_non_o_share"] == 0.0
