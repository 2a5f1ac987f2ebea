"""L003: a softmax or sigmoid applied before a loss that applies its own.

Planted: softmax before ``cross_entropy``; sigmoid before
``binary_cross_entropy_with_logits``. Near-misses: ``log_softmax`` +
``nll_loss``; raw logits to BCE-with-logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

from defib.rules.loss.l003_double_activation import DoubleActivation
from defib.signals.run import LossSignals, Signals


def _classes(n: int = 160) -> tuple[torch.Tensor, torch.Tensor]:
    ids, score = word_data(n, seed=13)
    return ids, torch.bucketize(score, torch.tensor([-1.0, 1.0]))  # 3 classes


def test_softmax_before_cross_entropy_fires():
    ids, labels = _classes()
    with watch() as w:
        model = BagOfWords(n_out=3)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, labels, size=16):
            probs = torch.softmax(model(x), dim=-1)  # where points at the softmax  # planted
            loss = F.cross_entropy(probs, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L003")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "loss.double_activation"
    assert f.evidence["probability_rows"] > 0.99 and "SoftmaxBackward0" in f.evidence["producer"]
    assert_where(f, test_softmax_before_cross_entropy_fires)


def test_sigmoid_before_bce_with_logits_fires():
    ids, labels = _classes()
    with watch() as w:
        model = BagOfWords(n_out=1)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, (labels == 2).float(), size=16):
            loss = F.binary_cross_entropy_with_logits(torch.sigmoid(model(x).squeeze(-1)), y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L003")
    assert f is not None and "Sigmoid" in f.message
    assert_where(f, test_sigmoid_before_bce_with_logits_fires)


def test_log_softmax_with_nll_loss_is_silent():
    ids, labels = _classes()
    with watch() as w:
        model = BagOfWords(n_out=3)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, labels, size=16):
            loss = F.nll_loss(torch.log_softmax(model(x), dim=-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.loss.fn == "nll_loss"
    assert find(w.diagnosis, "L003") is None


def test_raw_logits_to_bce_with_logits_are_silent():
    ids, labels = _classes()
    with watch() as w:
        model = BagOfWords(n_out=1)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, (labels == 2).float(), size=16):
            loss = F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert find(w.diagnosis, "L003") is None


def test_rule_on_signals():
    rule = DoubleActivation()
    ce = LossSignals(fn="cross_entropy", family="classification", prob_rows_share=0.5)
    assert rule.check(Signals(loss=ce)) is None
    # values in [0, 1] alone are not proof for BCE: the graph must name the activation
    bce = LossSignals(fn="binary_cross_entropy_with_logits", family="multilabel", unit_interval_share=1.0,
                      producer=("AddmmBackward0",))
    assert rule.check(Signals(loss=bce)) is None
