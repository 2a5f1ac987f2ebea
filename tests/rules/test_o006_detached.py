"""O006: the graph is broken between the loss and parameters that should learn.

Planted: the encoder run under ``torch.no_grad()`` in the training forward
while the optimizer holds its parameters; the [CLS] vector ``.detach()``-ed
before the head; the loss rebuilt from NumPy as a new leaf tensor (where:
the line that built it, not the backward call). Near-misses: a linear probe (encoder frozen and run under
``no_grad``, only the head in the optimizer); a healthy model whose BERT pooler
is computed but unused (it never gets a gradient, legitimately).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from helpers import BertRegressor, assert_where, encode, find, sentences, watch
from torch import nn
from transformers import AutoModel

from defib.rules.optim.o006_detached import DetachedGraph
from defib.signals.run import OptimSignals, Signals

ROWS = sentences(96, seed=26)


class NoGradEncoder(nn.Module):
    """Runs the encoder under no_grad (copied from an evaluation loop)."""

    def __init__(self, model_dir):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(str(model_dir))
        self.head = nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None):
        with torch.no_grad():
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # planted
        return self.head(h[:, 0]).squeeze(-1)


class DetachedCls(NoGradEncoder):
    def forward(self, input_ids, attention_mask=None):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(h[:, 0].detach()).squeeze(-1)  # planted


def _train(model, opt, model_dir) -> None:
    model.train()  # from_pretrained leaves the encoder in eval mode
    for i in range(0, len(ROWS), 16):
        enc, y = encode(model_dir, ROWS[i:i + 16])
        loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_encoder_under_no_grad_fires(tiny_model_dir):
    with watch() as w:
        model = NoGradEncoder(tiny_model_dir)
        _train(model, torch.optim.AdamW(model.parameters(), lr=1e-3), tiny_model_dir)
    f = find(w.diagnosis, "O006")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "optim.detached"
    assert "embeddings" in f.evidence["groups_without_grad"] and f.evidence["groups_with_grad"] == ["head"]
    assert_where(f, NoGradEncoder)


def test_detached_cls_fires(tiny_model_dir):
    with watch() as w:
        model = DetachedCls(tiny_model_dir)
        _train(model, torch.optim.AdamW(model.parameters(), lr=1e-3), tiny_model_dir)
    f = find(w.diagnosis, "O006")
    assert f is not None and f.evidence["groups_with_grad"] == ["head"]
    assert_where(f, DetachedCls)


def test_loss_rebuilt_from_numpy_points_at_the_line_that_built_it(tiny_model_dir):
    def train_numpy_loss(model, opt):
        model.train()
        for i in range(0, len(ROWS), 16):
            enc, y = encode(tiny_model_dir, ROWS[i:i + 16])
            pred = model(enc["input_ids"], enc["attention_mask"])
            err = (pred.detach().numpy() - y.numpy()) ** 2
            loss = torch.tensor(np.mean(err), requires_grad=True)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()

    with watch() as w:
        model = BertRegressor(tiny_model_dir)
        train_numpy_loss(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    f = find(w.diagnosis, "O006")
    assert f is not None and f.evidence["groups_with_grad"] == [] and f.evidence["loss_without_graph"]
    assert "no grad_fn" in f.message
    assert_where(f, train_numpy_loss)
    # the loss never touches the predictions, so defib cannot see them; the cause still makes the run at risk
    assert w.diagnosis.verdict == "at_risk"


def test_linear_probe_under_no_grad_is_silent(tiny_model_dir):
    with watch() as w:
        model = NoGradEncoder(tiny_model_dir)
        model.encoder.requires_grad_(False)
        _train(model, torch.optim.AdamW(model.head.parameters(), lr=1e-3), tiny_model_dir)
    assert find(w.diagnosis, "O006") is None


def test_unused_pooler_is_silent(tiny_model_dir):
    with watch() as w:
        model = BertRegressor(tiny_model_dir)  # pools last_hidden_state[:, 0]; encoder.pooler is never used
        _train(model, torch.optim.AdamW(model.parameters(), lr=1e-3), tiny_model_dir)
    assert w.watcher.s.optim.never_grad == ["encoder.pooler.dense.weight", "encoder.pooler.dense.bias"]
    assert find(w.diagnosis, "O006") is None


def test_rule_on_signals():
    rule = DetachedGraph()
    cut = OptimSignals(never_grad=["encoder.embeddings.word_embeddings.weight", "encoder.encoder.layer.0.w"],
                       groups_with_grad=["head"])
    assert rule.check(Signals(step=5, optim=cut)) is not None
    head = OptimSignals(never_grad=["head.weight"], groups_with_grad=["embeddings", "layer.0"])
    assert rule.check(Signals(step=5, optim=head)) is not None
    top_unused = OptimSignals(never_grad=["encoder.encoder.layer.5.w", "encoder.pooler.dense.weight"],
                              groups_with_grad=["embeddings", "layer.0", "head"])
    assert rule.check(Signals(step=5, optim=top_unused)) is None  # pooling from hidden_states[-2]
