"""O103: planted: AdamW at lr 0.5 (where the sweep runs away); near-miss: lr 1e-3."""

from __future__ import annotations

import torch
from helpers import BertRegressor, find
from probing import probe


def test_lr_past_the_sweep_fires(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    sig, d = probe(model, tiny_model_dir, only=("lr_range",), optimizer=torch.optim.AdamW(model.parameters(), lr=0.5))
    f = find(d, "O103")
    assert f is not None and f.cause == "optim.lr_too_high", (d.findings, sig.lr_range)
    assert f.evidence["user_lr"] == 0.5


def test_moderate_lr_is_silent(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    sig, d = probe(model, tiny_model_dir, only=("lr_range",), optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))
    assert find(d, "O103") is None, sig.lr_range
