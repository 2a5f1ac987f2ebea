"""O101: planted: everything frozen (error), the encoder frozen (warning); near-miss: all trainable."""

from __future__ import annotations

from helpers import BertRegressor, find
from probing import probe

from defib.rules.base import Severity


def test_everything_frozen_is_an_error(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    model.requires_grad_(False)
    sig, d = probe(model, tiny_model_dir, only=("grads",))
    f = find(d, "O101")
    assert f is not None and f.cause == "optim.frozen" and f.severity == Severity.ERROR, d.findings


def test_frozen_encoder_is_a_warning(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    model.encoder.requires_grad_(False)
    sig, d = probe(model, tiny_model_dir, only=("grads",))
    f = find(d, "O101")
    assert f is not None and f.severity == Severity.WARNING and d.verdict == "at_risk", d.findings


def test_trainable_model_is_silent(tiny_model_dir):
    sig, d = probe(BertRegressor(tiny_model_dir), tiny_model_dir, only=("grads",))
    assert find(d, "O101") is None
