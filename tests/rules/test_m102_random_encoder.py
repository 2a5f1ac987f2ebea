"""M102: planted: an encoder built from its config (LayerNorms at init); near-miss: the (jittered) tiny checkpoint."""

from __future__ import annotations

from helpers import BertRegressor, find
from probing import probe
from transformers import AutoConfig, AutoModel


def test_encoder_from_config_fires(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    model.encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(tiny_model_dir)))
    sig, d = probe(model, tiny_model_dir, only=("sensitivity",))
    f = find(d, "M102")
    assert f is not None and f.cause == "model.not_pretrained", d.findings
    assert f.evidence["layernorm_at_init"] == 1.0


def test_loaded_checkpoint_is_silent(tiny_model_dir):
    sig, d = probe(BertRegressor(tiny_model_dir), tiny_model_dir, only=("sensitivity",))
    assert sig.sensitivity.layernorm_at_init == 0.0
    assert find(d, "M102") is None
