"""M002: the head starts with weights that are non-finite or far too large.

Planted: ``nn.init.normal_(head.weight, std=2.0)`` (std x sqrt(fan_in) = 8);
a head weight made from ``torch.full(nan)`` placeholders. Near-miss: BERT's
own head init, ``normal_(std=0.02)`` with a zero bias.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data
from torch import nn

from defib.rules.model.m002_bad_head_init import BadHeadInit
from defib.signals.run import ModelSignals, Signals

IDS, SCORE = word_data(160, seed=32)


def _train(model: nn.Module) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for x, y in batches(IDS, SCORE, size=16):
        loss = F.mse_loss(model(x).squeeze(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_head_init_with_std_2_fires():
    with watch() as w:
        model = BagOfWords(dim=16)
        nn.init.normal_(model.head.weight, std=2.0)  # planted
        _train(model)
    f = find(w.diagnosis, "M002")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "model.bad_head_init" and f.evidence["fan_in"] == 16 and f.evidence["scale"] > 5
    assert_where(f, test_head_init_with_std_2_fires)


def test_non_finite_head_weights_fire():
    with watch() as w:
        model = BagOfWords(dim=16)
        model.head.weight = nn.Parameter(torch.full((1, 16), math.nan))
        _train(model)
    f = find(w.diagnosis, "M002")
    assert f is not None and "NaN or Inf" in f.message


def test_bert_style_head_init_is_silent():
    with watch() as w:
        model = BagOfWords(dim=16)
        nn.init.normal_(model.head.weight, std=0.02)
        nn.init.zeros_(model.head.bias)
        _train(model)
    assert w.watcher.s.model.head_init_std < 0.05
    assert find(w.diagnosis, "M002") is None


def test_rule_on_signals():
    rule = BadHeadInit()
    # PyTorch's default Linear init over 384 inputs: std = 1/sqrt(3 * 384)
    default = ModelSignals(head_fan_in=384, head_init_std=1 / math.sqrt(3 * 384))
    assert rule.check(Signals(model=default)) is None
    assert rule.check(Signals(model=ModelSignals(head_fan_in=384, head_init_std=1.0))) is not None
