"""M001: the encoder was never loaded from pretrained weights (or was re-initialised).

Planted: ``AutoModel.from_config`` instead of ``from_pretrained``; an init
function meant for the new head applied to the whole model after loading.
Near-miss: ``from_pretrained`` with only the new head initialised
(``normal_(std=0.02)``, as BERT does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import assert_where, encode, find, sentences, watch
from torch import nn
from transformers import AutoConfig, AutoModel

from defib.rules.model.m001_not_pretrained import NotPretrained
from defib.signals.run import ModelSignals, Signals

ROWS = sentences(64, seed=31)


class Regressor(nn.Module):
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None):
        return self.head(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0])


def init_weights(module: nn.Module) -> None:
    """Meant for the new head; ``model.apply(init_weights)`` runs it on the encoder too."""
    if isinstance(module, nn.LayerNorm):
        module.reset_parameters()
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)


def _train(model: nn.Module, model_dir) -> None:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i in range(0, len(ROWS), 16):
        enc, y = encode(model_dir, ROWS[i:i + 16])
        loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]).squeeze(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_model_built_from_config_fires(tiny_model_dir):
    with watch() as w:
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(tiny_model_dir)))  # planted
        _train(Regressor(encoder), tiny_model_dir)
    f = find(w.diagnosis, "M001")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "model.not_pretrained" and f.evidence["layernorm_at_init"] == 1.0
    assert f.evidence["from_pretrained_seen"] is False
    assert_where(f, test_model_built_from_config_fires)


def test_init_function_applied_to_the_whole_model_fires(tiny_model_dir):
    with watch() as w:
        model = Regressor(AutoModel.from_pretrained(str(tiny_model_dir)))
        model.apply(init_weights)  # planted
        _train(model, tiny_model_dir)
    f = find(w.diagnosis, "M001")
    assert f is not None and f.evidence["from_pretrained_seen"] is True and f.evidence["user_init_calls"] > 0
    assert "re-initialised" in f.message
    assert_where(f, test_init_function_applied_to_the_whole_model_fires)  # the apply() call, not the body of init_weights


def test_pretrained_encoder_with_only_the_head_initialised_is_silent(tiny_model_dir):
    with watch() as w:
        model = Regressor(AutoModel.from_pretrained(str(tiny_model_dir)))
        model.head.apply(init_weights)
        _train(model, tiny_model_dir)
    m = w.watcher.s.model
    assert m.layernorm_at_init == 0.0 and m.pretrained_loaded
    assert find(w.diagnosis, "M001") is None


def test_rule_on_signals():
    rule = NotPretrained()
    assert rule.check(Signals(model=ModelSignals(layernorm_at_init=0.5))) is None  # some LayerNorms trained
    assert rule.check(Signals(model=ModelSignals(layernorm_at_init=1.0))) is not None


def test_user_reinit_of_loaded_encoder_fires_and_head_only_init_stays_silent():
    """apply(init_weights) over the whole model leaves LayerNorms alone but wipes Linear/Embedding weights."""
    from defib.signals.common import Where
    from defib.rules.model.m001_not_pretrained import NotPretrained
    from defib.signals.run import ModelSignals, Signals

    w = Where("train.py", 31, "nn.init.normal_(module.weight, std=0.02)")
    encoder = {f"encoder.layer.{i}.attention.self.query.weight": w for i in range(6)}
    m = ModelSignals(layernorm_at_init=0.0, encoder_tensors=12, head_params=["fc.weight", "fc.bias"],
                     init_where={**encoder, "fc.weight": w})
    found = NotPretrained().check(Signals(model=m))
    assert found is not None and found.cause == "model.not_pretrained" and found.where == w
    head_only = ModelSignals(layernorm_at_init=0.0, encoder_tensors=12, head_params=["fc.weight", "fc.bias"],
                             init_where={"fc.weight": w})
    assert NotPretrained().check(Signals(model=head_only)) is None
