"""O104: planted: AdamW at lr 1e-9 and at 0; near-miss: lr 1e-2 (the suggestion is at most a tenth of the sweep's top, 1)."""

from __future__ import annotations

import pytest
import torch
from helpers import BertRegressor, find
from probing import probe


@pytest.mark.parametrize("lr", [1e-9, 0.0])
def test_tiny_lr_fires(tiny_model_dir, lr):
    model = BertRegressor(tiny_model_dir)
    sig, d = probe(model, tiny_model_dir, only=("lr_range",), optimizer=torch.optim.AdamW(model.parameters(), lr=lr))
    f = find(d, "O104")
    assert f is not None and f.cause == "optim.lr_too_low", (d.findings, sig.lr_range)


def test_moderate_lr_is_silent(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    sig, d = probe(model, tiny_model_dir, only=("lr_range",), optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2))
    assert find(d, "O104") is None, sig.lr_range
