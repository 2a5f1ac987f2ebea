"""O004: the parameters that must learn are frozen.

Planted: everything frozen, then only the top encoder layer unfrozen (the head
forgotten); everything frozen but one LayerNorm. Near-miss: a linear probe (encoder frozen, head trainable),
a legitimate choice the rule may report at most as info.
"""

from __future__ import annotations

import torch

import torch.nn.functional as F
from helpers import BertRegressor, assert_where, encode, find, sentences, watch

from defib.rules.base import Severity
from defib.rules.measures import collapsed, not_learning
from defib.rules.optim.o004_frozen import FrozenParameters
from defib.signals.run import ModelSignals, OptimSignals, PredSignals, Signals

ROWS = sentences(96, seed=24)


def _train(model, opt) -> None:
    model.train()  # from_pretrained leaves the encoder in eval mode
    for i in range(0, len(ROWS), 16):
        enc, y = encode(model.encoder.name_or_path, ROWS[i:i + 16])
        loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_frozen_head_fires(tiny_model_dir):
    with watch() as w:
        model = BertRegressor(tiny_model_dir)
        model.requires_grad_(False)  # planted
        model.encoder.encoder.layer[-1].requires_grad_(True)  # "train only the top layer", and the head forgotten
        _train(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    f = find(w.diagnosis, "O004")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "optim.frozen" and f.severity == Severity.ERROR
    assert sorted(f.evidence["head_frozen"]) == ["head.bias", "head.weight"]
    assert_where(f, test_frozen_head_fires)


def test_nearly_everything_frozen_fires(tiny_model_dir):
    with watch() as w:
        model = BertRegressor(tiny_model_dir)
        model.requires_grad_(False)  # planted
        model.encoder.embeddings.LayerNorm.requires_grad_(True)  # 64 of ~1M weights
        _train(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    f = find(w.diagnosis, "O004")
    assert f is not None and f.severity == Severity.ERROR and f.evidence["trainable_share"] < 1e-3
    assert_where(f, test_nearly_everything_frozen_fires)


def test_linear_probe_is_at_most_info(tiny_model_dir):
    with watch() as w:
        model = BertRegressor(tiny_model_dir)
        model.encoder.requires_grad_(False)
        _train(model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3))
    assert w.watcher.s.optim.frozen  # the frozen encoder was seen
    f = find(w.diagnosis, "O004")
    # a linear probe is a choice, not a bug: info while the predictions still vary, a warning once flat
    expected = Severity.WARNING if collapsed(w.watcher.s) or not_learning(w.watcher.s) else Severity.INFO
    assert f is None or f.severity == expected, f


def test_rule_on_signals():
    rule = FrozenParameters()
    o = OptimSignals(n_params=1000, n_trainable=1000)
    assert rule.check(Signals(optim=o)) is None  # nothing frozen
    o = OptimSignals(n_params=1000, n_trainable=500, frozen=["encoder.embeddings.word_embeddings.weight"])
    assert rule.check(Signals(optim=o, model=ModelSignals(head_params=["head.weight"]))) is None  # partial freeze


class ReadsALowerLayer(BertRegressor):
    """The head reads the first layer's output (hidden_states[1]): the layers above it feed nothing."""

    def forward(self, input_ids, attention_mask=None):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return self.head(out.hidden_states[1][:, 0]).squeeze(-1)


def test_unfrozen_layers_that_do_not_feed_the_head_get_no_gradient(tiny_model_dir):
    """The measurement: only the head's group receives gradients when the trainable layer feeds nothing."""
    with watch() as w:
        model = ReadsALowerLayer(tiny_model_dir)
        model.encoder.embeddings.requires_grad_(False)
        model.encoder.encoder.layer[0].requires_grad_(False)  # everything below hidden_states[1] frozen
        _train(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    assert w.watcher.s.optim.groups_with_grad == ["head"], w.watcher.s.optim.groups_with_grad


def _only_head_learns(loss: float) -> Signals:
    """Half the weights trainable on paper, gradients only in the head, 40 steps, a loss against the baseline 1.0."""
    o = OptimSignals(n_params=1000, n_trainable=500, frozen=["encoder.embeddings.word_embeddings.weight"],
                     groups_with_grad=["head"])
    p = PredSignals(task="regression")
    p.loss_window.add(40, loss)
    p.baseline.add(40, 1.0)
    return Signals(step=40, optim=o, preds=p, model=ModelSignals(head_params=["head.weight"]))


def test_only_the_head_learning_while_stuck_fires_and_while_learning_is_silent():
    rule = FrozenParameters()
    f = rule.check(_only_head_learns(loss=1.0))
    assert f is not None and f.evidence["groups_with_grad"] == ["head"] and f.severity == Severity.WARNING
    assert rule.check(_only_head_learns(loss=0.5)) is None  # a probe that learns is a choice
