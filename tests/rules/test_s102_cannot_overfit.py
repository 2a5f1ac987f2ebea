"""S102: planted: an optimizer at lr 0; near-miss: AdamW at the sweep's suggestion."""

from __future__ import annotations

import torch
from helpers import BertRegressor, find
from probing import probe


def test_lr_zero_cannot_overfit(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    sig, d = probe(model, tiny_model_dir, only=("overfit",), optimizer=torch.optim.AdamW(model.parameters(), lr=0.0))
    f = find(d, "S102")
    assert f is not None and f.cause is None and d.verdict == "at_risk", d.findings


def test_healthy_model_overfits(tiny_model_dir):
    sig, d = probe(BertRegressor(tiny_model_dir), tiny_model_dir, only=("lr_range", "overfit"))
    assert sig.overfit.reached_at is not None, sig.overfit
    assert find(d, "S102") is None
