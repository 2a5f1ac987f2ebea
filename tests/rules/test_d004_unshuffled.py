"""D004: training batches ordered or grouped by label.

Planted: the rows sorted by target and a DataLoader with ``shuffle=False``.
Near-misses: ``shuffle=False`` on rows that are already in random order, and
``shuffle=True`` on the sorted rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, find, watch, word_data
from torch.utils.data import DataLoader, TensorDataset

from defib.rules.base import Severity
from defib.rules.data.d004_unshuffled import UnshuffledBatches
from defib.signals.run import DataSignals, Signals


def _train(loader: DataLoader) -> None:
    model = BagOfWords()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for ids, y in loader:
        loss = F.mse_loss(model(ids).squeeze(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _sorted_set() -> TensorDataset:
    ids, y = word_data(256, seed=5)
    order = torch.argsort(y)
    return TensorDataset(ids[order], y[order])


def test_sorted_rows_without_shuffle_fire():
    data = _sorted_set()
    with watch() as w:
        loader = DataLoader(data, batch_size=16, shuffle=False)  # planted
        _train(loader)
    f = find(w.diagnosis, "D004")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "data.unshuffled" and f.severity == Severity.ERROR
    assert f.evidence["within_batch_var_ratio"] < 0.1 and f.evidence["batch_mean_autocorr"] > 0.9
    assert f.evidence["sampler"] == "SequentialSampler"
    assert_where(f, test_sorted_rows_without_shuffle_fire)


def test_no_shuffle_on_rows_already_in_random_order_is_silent():
    ids, y = word_data(256, seed=5)  # generated in random order
    with watch() as w:
        _train(DataLoader(TensorDataset(ids, y), batch_size=16, shuffle=False))
    d = w.watcher.s.data
    assert d.sampler == "SequentialSampler" and d.within_batch_var_ratio > 0.7  # measured, and batches look random
    assert find(w.diagnosis, "D004") is None


def test_sorted_rows_with_shuffle_are_silent():
    with watch() as w:
        _train(DataLoader(_sorted_set(), batch_size=16, shuffle=True))
    assert w.watcher.s.data.within_batch_var_ratio is not None
    assert find(w.diagnosis, "D004") is None


def test_an_in_order_evaluation_loader_is_not_the_training_loader():
    """Evaluation loaders read in order, often with gradients enabled (the Trainer's): they do not count."""
    data = _sorted_set()
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        train = iter(DataLoader(data, batch_size=16, shuffle=True))
        dev = DataLoader(data, batch_size=64, shuffle=False)
        for step, (ids, y) in enumerate(train):
            loss = F.mse_loss(model(ids).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 5 == 4:  # evaluate mid-epoch, the training iterator stays open
                model.eval()
                for dev_ids, _ in dev:
                    model(dev_ids)
                model.train()
    assert w.watcher.s.data.sampler == "RandomSampler"
    assert find(w.diagnosis, "D004") is None


def test_rule_on_signals():
    rule = UnshuffledBatches()

    def check(ratio, ac):
        return rule.check(Signals(data=DataSignals(within_batch_var_ratio=ratio, batch_mean_autocorr=ac)))

    assert check(0.05, 0.95) is not None
    assert check(0.9, 0.95) is None      # batches vary as much as the data
    assert check(0.05, 0.1) is None      # homogeneous batches, consecutive ones unrelated (shuffled groups)
    assert check(0.05, None) is None


def test_in_order_loader_showing_one_label_fires_before_constant_labels():
    """Grouped by label + shuffle=False: the first hundreds of rows all carry one class."""
    from defib.diagnosis import diagnose
    from defib.signals.run import DataSignals, LossSignals, PredSignals, Signals

    preds = PredSignals(task="classification", n_seen=1600, n_classes=3, label_counts={0: 1600}, target_std=0.0)
    s = Signals(step=100, data=DataSignals(shuffle=False, sampler="SequentialSampler"), preds=preds,
                loss=LossSignals(fn="cross_entropy", family="classification"))
    causes = [f.cause for f in diagnose(s).findings if f.cause]
    assert causes[0] == "data.unshuffled" and "data.constant_labels" in causes
    s.data.shuffle = True  # shuffled and still one class: the labels really are constant
    causes = [f.cause for f in diagnose(s).findings if f.cause]
    assert causes[0] == "data.constant_labels" and "data.unshuffled" not in causes
