"""O102: planted: ``.detach()`` on the [CLS] vector; near-miss: an unused pooler (no grad, legitimately)."""

from __future__ import annotations

from helpers import BertRegressor, find
from probing import Detached, probe


def test_detached_cls_fires(tiny_model_dir):
    sig, d = probe(Detached(tiny_model_dir), tiny_model_dir, only=("grads",))
    f = find(d, "O102")
    assert f is not None and f.cause == "optim.detached", d.findings
    assert f.evidence["tensors_without_grad"] == f.evidence["trainable_encoder_tensors"]


def test_unused_pooler_is_silent(tiny_model_dir):
    sig, d = probe(BertRegressor(tiny_model_dir), tiny_model_dir, only=("grads",))
    assert any("pooler" in n for n in sig.grads.no_grad)  # the pooler really got nothing
    assert find(d, "O102") is None


def test_head_reading_the_embedding_layer_is_not_a_cut(tiny_model_dir):
    from probing import EmbeddingCls

    sig, d = probe(EmbeddingCls(tiny_model_dir), tiny_model_dir, only=("grads",))
    assert sig.grads.norms.get("embeddings", 0) > 0 and "layer.1" not in sig.grads.norms  # layers skipped
    assert find(d, "O102") is None
