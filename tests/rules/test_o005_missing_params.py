"""O005: parameters that receive gradients are in no optimizer.

Planted: the optimizer built on the embedding only, the head left out.
Near-misses: two parameter groups (embedding at a low rate, head at a high
one) that cover everything; a frozen embedding left out of the optimizer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

from defib.rules.base import Severity
from defib.rules.optim.o005_missing_params import ParamsNotInOptimizer
from defib.signals.run import OptimSignals, Signals

IDS, SCORE = word_data(320, seed=25)


def _train(model, opt) -> None:
    for x, y in batches(IDS, SCORE, size=16):
        loss = F.mse_loss(model(x).squeeze(-1), y)
        opt.zero_grad()
        model.zero_grad()  # what a user may add when the optimizer "misses" parameters
        loss.backward()
        opt.step()


def test_head_left_out_of_the_optimizer_fires():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.embeddings.parameters(), lr=1e-2)  # planted
        _train(model, opt)
    f = find(w.diagnosis, "O005")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "optim.missing_params" and f.severity == Severity.ERROR
    assert sorted(f.evidence["missing"]) == ["head.bias", "head.weight"] and f.evidence["groups"] == ["head"]
    assert_where(f, test_head_left_out_of_the_optimizer_fires)


def test_two_parameter_groups_covering_everything_are_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW([{"params": model.embeddings.parameters(), "lr": 1e-3},
                                 {"params": model.head.parameters(), "lr": 1e-2}])
        _train(model, opt)
    assert find(w.diagnosis, "O005") is None


def test_frozen_embedding_left_out_is_silent():
    with watch() as w:
        model = BagOfWords()
        model.embeddings.requires_grad_(False)
        opt = torch.optim.AdamW(model.head.parameters(), lr=1e-2)
        _train(model, opt)
    assert w.watcher.s.optim.frozen == ["embeddings.weight"]
    assert find(w.diagnosis, "O005") is None


def test_rule_on_signals():
    rule = ParamsNotInOptimizer()
    enc_only = rule.check(Signals(step=3, optim=OptimSignals(not_in_optimizer=["encoder.layer.0.dense.weight"])))
    assert enc_only is not None and enc_only.severity == Severity.WARNING  # the encoder, not the head
    assert rule.check(Signals(step=0, optim=OptimSignals(not_in_optimizer=["head.weight"]))) is None
