"""L005: the loss is scaled so far from a per-example mean that updates explode or vanish.

Planted: ``reduction="sum"`` over batches of 128 with SGD; a mean loss
multiplied by 1000 before ``backward()`` with SGD. Near-misses: the mean loss
with SGD; ``loss / k`` with k accumulated micro-batches; ``reduction="sum"``
with AdamW, which normalises the gradient scale away.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

from defib.rules.loss.l005_scale import LossScale
from defib.signals.run import LossSignals, OptimSignals, Signals

IDS, SCORE = word_data(1280, seed=15)


def test_sum_reduction_over_large_batches_with_sgd_fires():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        for x, y in batches(IDS, SCORE, size=128):
            loss = F.mse_loss(model(x).squeeze(-1), y, reduction="sum")  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L005")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "loss.scale" and f.evidence["scale_vs_mean"] == 128 and f.evidence["reduction"] == "sum"
    assert_where(f, test_sum_reduction_over_large_batches_with_sgd_fires)


def test_sum_reduction_points_at_the_loss_module_that_sets_it():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        criterion = torch.nn.MSELoss(reduction="sum")  # planted
        for x, y in batches(IDS, SCORE, size=128):
            loss = criterion(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L005")
    assert f is not None, w.diagnosis.findings
    assert_where(f, test_sum_reduction_points_at_the_loss_module_that_sets_it)


def test_loss_multiplied_before_backward_with_sgd_fires():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.SGD(model.parameters(), lr=1e-6)
        for x, y in batches(IDS, SCORE, size=32):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            (loss * 1000).backward()  # planted
            opt.step()
    f = find(w.diagnosis, "L005")
    assert f is not None and abs(f.evidence["scale_vs_mean"] - 1000) < 1
    assert_where(f, test_loss_multiplied_before_backward_with_sgd_fires)


def test_mean_loss_with_sgd_is_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, SCORE, size=32):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.loss.scale_factor == 1
    assert find(w.diagnosis, "L005") is None


def test_loss_divided_by_accumulation_steps_is_silent():
    k = 4
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
        for i, (x, y) in enumerate(batches(IDS, SCORE, size=16)):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            (loss / k).backward()
            if (i + 1) % k == 0:
                opt.step()
                opt.zero_grad()
    o = w.watcher.s.optim
    assert o.micro_batches and set(o.micro_batches) == {k} and abs(w.watcher.s.loss.scale_factor - 1 / k) < 1e-6
    assert find(w.diagnosis, "L005") is None


def test_sum_reduction_with_adamw_is_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, SCORE, size=128):
            loss = F.mse_loss(model(x).squeeze(-1), y, reduction="sum")
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert find(w.diagnosis, "L005") is None


def test_rule_on_signals():
    rule = LossScale()
    o = OptimSignals(optimizer="Adam", n_trainable=1000)
    o.grad_total.add(5, 1e-6)  # RMS 3e-8 per weight: under 10x Adam's eps
    tiny = LossSignals(fn="mse_loss", family="regression", scale_factor=1e-4)
    assert "vanish" in rule.check(Signals(step=5, loss=tiny, optim=o)).message
    tiny.scale_factor = 1.0
    assert rule.check(Signals(step=5, loss=tiny, optim=o)) is None


def test_batch_sum_with_wild_sgd_updates_fires_and_calm_updates_stay_silent():
    """A sum over a batch (16x) only matters once some layer's updates are wild."""
    from defib.signals.common import Series
    from defib.rules.loss.l005_scale import LossScale
    from defib.signals.run import LossSignals, OptimSignals, Signals

    def check(update_ratio: float):
        ls = LossSignals(fn="mse_loss", family="regression", reduction="sum", input_shape=(16,), scale_factor=1.0)
        o = OptimSignals(optimizer="SGD")
        o.update_ratio["head"] = Series()
        o.update_ratio["head"].add(1, update_ratio)
        return LossScale().check(Signals(loss=ls, optim=o))

    assert check(0.2) is not None
    assert check(1e-3) is None
