"""L001: prediction and target shapes differ at a regression loss, so the loss broadcasts.

Planted: a (B, 1) head output against (B,) targets, through ``F.mse_loss`` and
through an ``nn.MSELoss`` module. Near-miss: the same with ``squeeze(-1)``,
including a last batch of one row.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data
from torch import nn

from defib.rules.base import Severity
from defib.rules.loss.l001_shape_mismatch import ShapeMismatch
from defib.signals.run import LossSignals, Signals

pytestmark = pytest.mark.filterwarnings("ignore:Using a target size:UserWarning")


def test_b1_predictions_against_b_targets_fire():
    ids, score = word_data(160, seed=11)
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, score, size=16):
            pred = model(x)  # (16, 1)
            loss = F.mse_loss(pred, y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L001")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "loss.shape_mismatch" and f.severity == Severity.ERROR
    assert f.evidence["input_shape"] == [16, 1] and f.evidence["target_shape"] == [16]
    assert f.evidence["broadcast_calls"] == f.evidence["calls"] == 10
    assert w.diagnosis.findings[0].code == "L001"  # ranked first
    assert_where(f, test_b1_predictions_against_b_targets_fire)


def test_mse_loss_module_fires_at_the_users_call():
    ids, score = word_data(160, seed=11)
    loss_fn = nn.MSELoss()
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, score, size=16):
            loss = loss_fn(model(x), y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L001")
    assert f is not None and f.fix.startswith("loss = loss_fn(pred.squeeze(-1)")
    assert_where(f, test_mse_loss_module_fires_at_the_users_call)


def test_squeezed_predictions_are_silent_even_with_a_last_batch_of_one():
    ids, score = word_data(161, seed=11)
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for i in range(0, 161, 16):
            x, y = ids[i:i + 16], score[i:i + 16]  # the last batch has one row
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.loss.calls == 11
    assert find(w.diagnosis, "L001") is None


def test_rule_on_signals():
    rule = ShapeMismatch()
    ls = LossSignals(fn="mse_loss", family="regression", calls=10, broadcast_calls=1,
                     input_shape=(16, 1), target_shape=(16,))
    assert rule.check(Signals(loss=ls)) is None  # one odd batch is not the pattern
    ls.broadcast_calls = 10
    assert rule.check(Signals(loss=ls)).evidence["calls"] == 10
    ce = LossSignals(fn="cross_entropy", family="classification", calls=10, broadcast_calls=10)
    assert rule.check(Signals(loss=ce)) is None  # (B, K) logits against (B,) ids is how cross-entropy works
