"""O002: learning rate so low that nothing moves.

Planted: AdamW at lr 1e-8 (a typo for 1e-5) on the tiny BERT. Near-miss: the
healthy fine-tuning rate 2e-5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BertRegressor, assert_where, encode, find, sentences, watch

from defib.signals.common import Series
from defib.rules.optim.o002_lr_too_low import LearningRateTooLow
from defib.signals.run import OptimSignals, Signals

ROWS = sentences(192, seed=22)


def test_lr_1e_8_fires(tiny_model_dir):
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-8)  # planted
        for i in range(0, len(ROWS), 16):
            enc, y = encode(tiny_model_dir, ROWS[i:i + 16])
            loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "O002")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "optim.lr_too_low" and f.evidence["lr"] == 1e-8
    assert_where(f, test_lr_1e_8_fires)


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
    assert w.watcher.s.optim.update_ratio  # measured
    assert find(w.diagnosis, "O002") is None


def test_rule_on_signals():
    rule = LearningRateTooLow()

    def check(ratio, lr_now):
        o = OptimSignals(optimizer="AdamW", lr_initial=[2e-5], groups_with_grad=["layer.0"])
        o.update_ratio["layer.0"] = Series()
        for step in (1, 2, 10):
            o.update_ratio["layer.0"].add(step, ratio)
            o.lr.add(step, lr_now)
        return rule.check(Signals(step=10, optim=o))

    assert check(1e-8, 2e-5) is not None
    assert check(1e-8, 1e-9) is None   # a schedule decayed the lr: O003's business
    assert check(5e-4, 2e-5) is None


LONG = sentences(640, seed=23)  # 40 steps of 16: past the grace period


def _train(tiny_model_dir, make_optimizer):
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = make_optimizer(model.parameters())
        for i in range(0, len(LONG), 16):
            enc, y = encode(tiny_model_dir, LONG[i:i + 16])
            loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w


def test_an_adam_learning_rate_given_to_sgd_is_too_low_for_the_run(tiny_model_dir):
    w = _train(tiny_model_dir, lambda params: torch.optim.SGD(params, lr=1e-5, momentum=0.9))  # planted
    f = find(w.diagnosis, "O002")
    assert f is not None, w.diagnosis.findings
    assert f.evidence["total_move"] < 1e-3 and "SGD" in f.message
    assert_where(f, test_an_adam_learning_rate_given_to_sgd_is_too_low_for_the_run)  # the optimizer chosen


def test_the_same_learning_rate_with_adamw_is_silent(tiny_model_dir):
    w = _train(tiny_model_dir, lambda params: torch.optim.AdamW(params, lr=1e-5))
    assert find(w.diagnosis, "O002") is None, w.diagnosis.findings
