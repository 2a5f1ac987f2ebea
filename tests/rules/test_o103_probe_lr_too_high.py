"""O103: planted: plain SGD at lr 5 (past where its sweep runs away); near-miss: AdamW at lr 1e-3."""

from __future__ import annotations

import torch
from helpers import BertRegressor, find
from probing import probe


def test_lr_past_the_sweep_fires(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    sig, d = probe(model, tiny_model_dir, only=("lr_range",), optimizer=torch.optim.SGD(model.parameters(), lr=5.0))
    f = find(d, "O103")
    assert f is not None and f.cause == "optim.lr_too_high", (d.findings, sig.lr_range)
    assert f.evidence["user_lr"] == 5.0 and f.evidence["optimizer"] == "SGD"


def test_moderate_lr_is_silent(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    sig, d = probe(model, tiny_model_dir, only=("lr_range",), optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3))
    assert find(d, "O103") is None, sig.lr_range
