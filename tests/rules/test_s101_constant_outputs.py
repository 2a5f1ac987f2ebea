"""S101: planted: a head fed the embedding layer's [CLS] (one vector for all); near-miss: the healthy model."""

from __future__ import annotations

from helpers import BertRegressor, find
from probing import EmbeddingCls, probe


def test_constant_outputs_flatline(tiny_model_dir):
    sig, d = probe(EmbeddingCls(tiny_model_dir), tiny_model_dir, only=("initial", "sensitivity"))
    f = find(d, "S101")
    assert f is not None and f.cause is None, d.findings
    assert d.verdict == "flatlined" and d.flatline["pred_std"] is not None
    assert d.findings[0].code == "M103" and "S101" in d.findings[0].symptoms  # folded under its cause


def test_varying_outputs_are_silent(tiny_model_dir):
    sig, d = probe(BertRegressor(tiny_model_dir), tiny_model_dir, only=("initial", "sensitivity"))
    assert sig.sensitivity.output_spread > 0.05
    assert find(d, "S101") is None and d.verdict == "healthy"
