"""M103: planted: the embedding layer's [CLS] vector as the sentence vector; near-miss: the last layer's [CLS]."""

from __future__ import annotations

from helpers import BertRegressor, find
from probing import EmbeddingCls, probe


def test_embedding_layer_cls_fires(tiny_model_dir):
    sig, d = probe(EmbeddingCls(tiny_model_dir), tiny_model_dir, only=("sensitivity",))
    f = find(d, "M103")
    assert f is not None and f.cause == "model.pooling", d.findings
    assert f.evidence["pooled_spread"] < 1e-3 < 0.2 < f.evidence["token_spread"]


def test_last_layer_cls_is_silent(tiny_model_dir):
    sig, d = probe(BertRegressor(tiny_model_dir), tiny_model_dir, only=("sensitivity",))
    assert sig.sensitivity.pooled_spread > 0.05
    assert find(d, "M103") is None
