"""M004: the sentence vector is taken from a place that ignores the input.

Planted: the [CLS] vector of the embedding layer (``hidden_states[0][:, 0]``),
identical for every text (with dropout off; and with the default dropout,
which M004 must see through: it measures spread with a dropout-blind median). Near-miss: a masked mean over the last layer's
tokens. (The tiny test encoder is not really pretrained, so its last-layer
[CLS] vectors are nearly identical across texts; a mean over tokens is the
healthy pooling that differs between inputs on it.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import assert_where, encode, find, sentences, watch
from torch import nn
from transformers import AutoModel

from defib.rules.model.m004_pooling import PoolingIgnoresInput
from defib.signals.run import ModelSignals, Signals

ROWS = sentences(96, seed=34)


class EmbeddingCls(nn.Module):
    def __init__(self, model_dir, **config):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(str(model_dir), **config)
        self.head = nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return self.head(out.hidden_states[0][:, 0]).squeeze(-1)  # planted


class MeanPooled(EmbeddingCls):
    def forward(self, input_ids, attention_mask):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        m = attention_mask.unsqueeze(-1).float()  # (B, T, 1)
        return self.head((h * m).sum(1) / m.sum(1)).squeeze(-1)


def _train(model: nn.Module, model_dir) -> None:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i in range(0, len(ROWS), 16):
        enc, y = encode(model_dir, ROWS[i:i + 16])
        loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_embedding_layer_cls_without_dropout_fires(tiny_model_dir):
    with watch() as w:
        _train(EmbeddingCls(tiny_model_dir, hidden_dropout_prob=0.0), tiny_model_dir)
    f = find(w.diagnosis, "M004")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "model.pooling" and f.evidence["head_input_spread"] < 1e-3 < f.evidence["token_spread"]
    assert_where(f, EmbeddingCls)


def test_embedding_layer_cls_with_dropout_fires(tiny_model_dir):
    with watch() as w:
        _train(EmbeddingCls(tiny_model_dir), tiny_model_dir)
    f = find(w.diagnosis, "M004")
    assert f is not None, w.diagnosis.findings
    assert_where(f, EmbeddingCls)


def test_masked_mean_pooling_is_silent(tiny_model_dir):
    with watch() as w:
        _train(MeanPooled(tiny_model_dir), tiny_model_dir)
    assert len(w.watcher.s.model.head_input_spread) >= 2  # measured
    assert find(w.diagnosis, "M004") is None


def test_rule_on_signals():
    rule = PoolingIgnoresInput()

    def check(head, tokens):
        m = ModelSignals()
        for step, (h, t) in enumerate(zip(head, tokens), 1):
            m.head_input_spread.add(step, h)
            m.token_spread.add(step, t)
        return rule.check(Signals(model=m))

    assert check([0.001, 0.001, 0.001], [0.8, 0.8, 0.8]) is not None
    assert check([0.3, 0.3, 0.3], [0.8, 0.8, 0.8]) is None
    assert check([0.001, 0.001, 0.001], [0.05, 0.05, 0.05]) is None  # the encoder itself collapsed: not pooling
    assert check([0.001], [0.8]) is None  # one measurement is not enough


def _train_outside(encoder: nn.Module, head: nn.Module, model_dir, pick) -> None:
    encoder.train()
    opt = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()), lr=1e-3)
    for i in range(0, len(ROWS), 16):
        enc, y = encode(model_dir, ROWS[i:i + 16])
        out = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
        pooled = pick(out, enc["attention_mask"])  # planted
        loss = F.mse_loss(head(pooled).squeeze(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _masked_mean(out, mask):
    m = mask.unsqueeze(-1).float()  # (B, T, 1)
    return (out.last_hidden_state * m).sum(1) / m.sum(1)


def test_head_outside_the_model_on_the_embedding_layer_fires(tiny_model_dir):
    encoder = AutoModel.from_pretrained(str(tiny_model_dir), hidden_dropout_prob=0.0)
    with watch() as w:
        _train_outside(encoder, nn.Linear(encoder.config.hidden_size, 1), tiny_model_dir,
                       lambda out, mask: out.hidden_states[0][:, 0])
    f = find(w.diagnosis, "M004")
    assert f is not None, w.diagnosis.findings
    assert f.evidence["head_input_spread"] < 1e-3 < f.evidence["token_spread"]
    assert_where(f, _train_outside)  # the line that picked the vector, not the head's call


def test_head_outside_the_model_on_a_masked_mean_is_silent(tiny_model_dir):
    encoder = AutoModel.from_pretrained(str(tiny_model_dir))
    with watch() as w:
        _train_outside(encoder, nn.Linear(encoder.config.hidden_size, 1), tiny_model_dir, _masked_mean)
    assert len(w.watcher.s.model.head_input_spread) >= 2  # measured on the head outside the model
    assert find(w.diagnosis, "M004") is None


def _embedding_cls(encoder, enc):
    out = encoder(**enc, output_hidden_states=True)
    return out.hidden_states[0][:, 0]  # planted


def test_a_head_fed_by_a_function_of_the_script_points_at_the_pick_inside_it(tiny_model_dir):
    """``head(features(encoder, enc))``: no variable holds the vector; the line is the function's return."""
    encoder = AutoModel.from_pretrained(str(tiny_model_dir), hidden_dropout_prob=0.0).train()
    head = nn.Linear(encoder.config.hidden_size, 1)
    with watch() as w:
        opt = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()), lr=1e-3)
        for i in range(0, len(ROWS), 16):
            enc, y = encode(tiny_model_dir, ROWS[i:i + 16])
            loss = F.mse_loss(head(_embedding_cls(encoder, enc)).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "M004")
    assert f is not None, w.diagnosis.findings
    assert_where(f, _embedding_cls)
