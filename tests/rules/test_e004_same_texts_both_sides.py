"""E004: after training a bi-encoder on pairs, the evaluation encodes the first column for both sides.

Planted: ``encode(left)`` twice after training (bench/faults/stacks4/s4_angle_evalcopy.py).
Near-misses: ``encode(left)`` then ``encode(right)``; one column under two prompts; the same texts encoded twice after training on one column.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_where, find, watch

pytest.importorskip("sentence_transformers")
from sentence_transformers.sentence_transformer import losses  # noqa: E402
from test_sentence_transformers import BATCH, bi_encoder, pairs, train  # noqa: E402

STEPS = 4


def test_first_column_encoded_for_both_sides_fires(tiny_model_dir):
    rows = pairs(STEPS * BATCH + 20, seed=1)
    left, right = [r[0] for r in rows[-20:]], [r[1] for r in rows[-20:]]
    model = bi_encoder(tiny_model_dir)
    with watch() as w:
        train(model, losses.AnglELoss(model), rows, steps=STEPS)
        model.encode(left)
        model.encode(left)  # planted
    f = find(w.diagnosis, "E004")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "eval.inputs" and f.evidence["texts"] == 20
    assert_where(f, test_first_column_encoded_for_both_sides_fires)
    assert right != left


def test_both_columns_encoded_are_silent(tiny_model_dir):
    rows = pairs(STEPS * BATCH + 20, seed=1)
    left, right = [r[0] for r in rows[-20:]], [r[1] for r in rows[-20:]]
    model = bi_encoder(tiny_model_dir)
    with watch() as w:
        train(model, losses.AnglELoss(model), rows, steps=STEPS)
        model.encode(left)
        model.encode(inputs=right)
        model.encode(left, prompt="query: ")
        model.encode(left, prompt="passage: ")  # one corpus under two prompts: two encodings
    assert w.watcher.s.model.eval_same_texts is None
    assert find(w.diagnosis, "E004") is None, w.diagnosis.findings


def test_same_texts_twice_after_training_on_one_column_are_silent(tiny_model_dir):
    texts = [r[0] for r in pairs(20, seed=1)]
    model = bi_encoder(tiny_model_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with watch() as w:
        for _ in range(STEPS):  # no loss of the package compares two columns: nothing is paired
            loss = model(model.preprocess(texts))["sentence_embedding"].pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
        model.encode(texts)
        model.encode(texts)
    assert w.watcher.s.step == STEPS
    assert find(w.diagnosis, "E004") is None, w.diagnosis.findings
