"""L004: an unweighted loss on imbalanced classes, and the model predicts the majority.

Planted: 82/18 labels carrying a weak signal, unweighted cross-entropy: after
40 steps the model answers the majority class for ~97% of inputs. Near-misses:
the same imbalance where the features do tell the classes apart (the model
keeps predicting both); the weak-signal data with class weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import assert_where, batches, find, watch
from torch import nn

from defib.rules.loss.l004_class_imbalance import ClassImbalance
from defib.signals.run import LossSignals, PredSignals, Signals


def _data(informative: bool, n: int = 1280) -> tuple[torch.Tensor, torch.Tensor]:
    """8 random features; ~20% positives, decided by feature 0 (informative) or only nudged by it."""
    g = torch.Generator().manual_seed(14)
    x = torch.randn(n, 8, generator=g)
    if informative:
        return x, (x[:, 0] > 0.84).long()
    return x, (torch.rand(n, generator=g) < torch.sigmoid(0.5 * x[:, 0] - 1.6)).long()


def test_majority_collapse_with_unweighted_loss_fires():
    x, labels = _data(informative=False)
    with watch() as w:
        model = nn.Linear(8, 2)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
        for xb, yb in batches(x, labels, size=32):
            loss = F.cross_entropy(model(xb), yb)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L004")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "loss.class_imbalance"
    assert 0.75 < f.evidence["majority_share"] < 0.9 and f.evidence["majority_prediction_share"] >= 0.9
    assert_where(f, test_majority_collapse_with_unweighted_loss_fires)


def test_a_collapse_with_a_third_of_the_labels_outside_the_majority_is_not_blamed_on_imbalance():
    """54/39/7 labels that do not belong to their inputs: the model answers the majority, but not because of it."""
    g = torch.Generator().manual_seed(15)
    x = torch.randn(1280, 8, generator=g)
    u = torch.rand(1280, generator=g)
    labels = (u > 0.54).long() + (u > 0.93).long()  # independent of x
    with watch() as w:
        model = nn.Linear(8, 3)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
        for xb, yb in batches(x, labels, size=32):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    p = w.watcher.s.preds
    major = max(p.pred_counts.values()) / sum(p.pred_counts.values())
    assert major >= 0.9, p.pred_counts  # it did collapse onto the majority ...
    assert find(w.diagnosis, "L004") is None  # ... yet a third of the labels is too much to give up for imbalance


def test_imbalanced_classes_that_the_model_tells_apart_are_silent():
    x, labels = _data(informative=True)
    with watch() as w:
        model = nn.Linear(8, 2)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
        for xb, yb in batches(x, labels, size=32):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    p = w.watcher.s.preds
    assert max(p.label_counts.values()) / sum(p.label_counts.values()) > 0.75  # just as imbalanced
    assert min(p.pred_counts.values()) > 0.1 * sum(p.pred_counts.values())  # both classes predicted
    assert find(w.diagnosis, "L004") is None


def test_weighted_loss_is_silent():
    x, labels = _data(informative=False)
    counts = torch.bincount(labels).float()
    weights = counts.sum() / (2 * counts)
    with watch() as w:
        model = nn.Linear(8, 2)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
        for xb, yb in batches(x, labels, size=32):
            loss = F.cross_entropy(model(xb), yb, weight=weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.loss.weighted
    assert find(w.diagnosis, "L004") is None


def test_rule_on_signals():
    rule = ClassImbalance()
    ce = LossSignals(fn="cross_entropy", family="classification")

    def check(step, labels, preds):
        return rule.check(Signals(step=step, loss=ce, preds=PredSignals(task="classification", n_classes=2,
                                                                        label_counts=labels, pred_counts=preds)))

    assert check(40, {0: 80, 1: 20}, {0: 100}) is not None
    assert check(10, {0: 80, 1: 20}, {0: 100}) is None          # grace period
    assert check(40, {0: 55, 1: 45}, {0: 100}) is None          # balanced labels: a collapse, but not this cause
    assert check(40, {0: 95, 1: 5}, {0: 100}) is not None       # extreme imbalance, nothing but the majority: the cause
    learned = PredSignals(task="classification", n_classes=2, label_counts={0: 95, 1: 5}, pred_counts={0: 100})
    learned.loss_window.add(40, 0.05)
    learned.baseline.add(40, 0.199)                              # loss far below the prior's entropy: it learned
    assert rule.check(Signals(step=40, loss=ce, preds=learned)) is None
    assert check(40, {0: 80, 1: 20}, {0: 70, 1: 30}) is None    # still predicts both
