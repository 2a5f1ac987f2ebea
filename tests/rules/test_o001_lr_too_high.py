"""O001: learning rate so high that each step rewrites the weights.

Planted: AdamW at lr 3e-2 on the tiny BERT, no warmup. Near-miss: the healthy
fine-tuning rate 2e-5.
"""

from __future__ import annotations

import pytest

import torch
import torch.nn.functional as F
from helpers import BertRegressor, assert_where, encode, find, sentences, watch

from defib.signals.common import Series
from defib.rules.optim.o001_lr_too_high import LearningRateTooHigh
from defib.signals.run import LossSignals, OptimSignals, PredSignals, Signals

ROWS = sentences(192, seed=21)


def test_lr_3e_2_fires(tiny_model_dir):
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-2)  # planted
        for i in range(0, len(ROWS), 16):
            enc, y = encode(tiny_model_dir, ROWS[i:i + 16])
            loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "O001")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "optim.lr_too_high" and f.evidence["lr"] == 3e-2
    assert f.evidence["update_ratio_peak"] >= 1e-2
    assert_where(f, test_lr_3e_2_fires)


def test_lr_2e_5_is_silent(tiny_model_dir):
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
        for i in range(0, len(ROWS), 16):
            enc, y = encode(tiny_model_dir, ROWS[i:i + 16])
            loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert "layer.0" in w.watcher.s.optim.update_ratio  # the encoder's updates were measured
    assert find(w.diagnosis, "O001") is None


def _optim(ratio: float, name: str = "AdamW") -> OptimSignals:
    o = OptimSignals(optimizer=name, lr_initial=[1e-3])
    for step in (1, 2, 10):
        o.update_ratio.setdefault("layer.0", Series()).add(step, ratio)
        o.update_ratio.setdefault("head", Series()).add(step, 1.0)  # a fresh head may move fast: not counted
    return o


def test_rule_on_signals():
    rule = LearningRateTooHigh()
    assert rule.check(Signals(step=10, optim=_optim(0.05))) is not None
    assert rule.check(Signals(step=10, optim=_optim(1e-3))) is None
    assert rule.check(Signals(step=1, optim=_optim(0.05))) is None  # too early
    # SGD with a summed loss: the loss scale drives the steps (L005), not the lr
    summed = LossSignals(fn="mse_loss", family="regression", reduction="sum")
    assert rule.check(Signals(step=10, optim=_optim(0.05, "SGD"), loss=summed)) is None


def _flat_preds(spread: float, loss: float = 2.3) -> PredSignals:
    p = PredSignals(task="regression")
    for step in (10, 20, 30):
        p.spread.add(step, spread)
        p.loss_window.add(step, loss)
        p.baseline.add(step, 2.2)
    return p


def test_nominal_step_stands_in_when_an_early_collapse_shrank_the_measured_ones():
    # AdamW at 1e-3 on weights of RMS 0.045: 0.022 of their scale per step; the measured steps shrank to 5e-6
    rule = LearningRateTooHigh()
    o = _optim(5e-6)
    o.encoder_weight_rms = 0.045
    f = rule.check(Signals(step=30, optim=o, preds=_flat_preds(0.05)))
    assert f is not None and f.evidence["nominal_update_ratio"] == pytest.approx(1e-3 / 0.045, rel=1e-3)
    # near-misses: the same lr on a model that still learns; a moderate lr on a collapsed one; SGD
    assert rule.check(Signals(step=30, optim=o, preds=_flat_preds(0.6, loss=1.1))) is None
    moderate = _optim(5e-6)
    moderate.lr_initial, moderate.encoder_weight_rms = [5e-5], 0.045
    assert rule.check(Signals(step=30, optim=moderate, preds=_flat_preds(0.05))) is None
    sgd = _optim(5e-6, "SGD")
    sgd.encoder_weight_rms = 0.045
    assert rule.check(Signals(step=30, optim=sgd, preds=_flat_preds(0.05))) is None
