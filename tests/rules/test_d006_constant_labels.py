"""D006: the labels reaching the loss are constant, missing or NaN.

Planted: a label map whose keys never match the raw labels (every label
becomes 0); NaN regression targets from a failed conversion. Near-misses:
strongly imbalanced but real labels; regression targets with a small but
real spread.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

from defib.rules.base import Severity
from defib.rules.data.d006_constant_labels import ConstantLabels
from defib.signals.run import PredSignals, Signals

RAW = ["fresh" if s > 0 else "rotten" for s in word_data(256, seed=6)[1].tolist()]


def test_label_map_that_never_matches_fires():
    ids, _ = word_data(256, seed=6)
    label_map = {"Fresh": 1, "Rotten": 0}  # capitalised: never matches the raw labels
    labels = torch.tensor([label_map.get(r, 0) for r in RAW])
    with watch() as w:
        model = BagOfWords(n_out=2)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, labels, size=16):
            loss = F.cross_entropy(model(x), y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "D006")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "data.constant_labels" and f.severity == Severity.ERROR
    assert f.evidence["label_counts"] == {0: 256}
    assert_where(f, test_label_map_that_never_matches_fires)


def test_nan_targets_fire():
    ids, score = word_data(128, seed=6)
    raw = [f"{s:.1f}" if i % 4 else "n/a" for i, s in enumerate(score.tolist())]
    y_all = torch.tensor([float(r) if r != "n/a" else math.nan for r in raw])
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, y_all, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "D006")
    assert f is not None and f.evidence["nonfinite_targets"] == 32
    assert_where(f, test_nan_targets_fire)


def test_imbalanced_but_real_labels_are_silent():
    ids, score = word_data(256, seed=6)
    labels = (score > 2).long()  # about 10% positives
    assert 0.03 < labels.float().mean() < 0.2
    with watch() as w:
        model = BagOfWords(n_out=2)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, labels, size=16):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert find(w.diagnosis, "D006") is None


def test_targets_with_a_small_real_spread_are_silent():
    ids, score = word_data(256, seed=6)
    targets = 3.0 + 0.02 * score  # std ~0.03 around 3: small, but not constant
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, targets, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.preds.target_std > 0.01
    assert find(w.diagnosis, "D006") is None


def test_rule_on_signals():
    rule = ConstantLabels()

    def check(**kw):
        return rule.check(Signals(preds=PredSignals(**kw)))

    assert check(task="regression", n_seen=100, target_std=0.0, target_mean=2.0) is not None
    assert check(task="regression", n_seen=10, target_std=0.0, target_mean=2.0) is None  # too few to judge
    assert check(task="regression", n_seen=100, target_std=0.5, target_mean=2.0) is None
    assert check(task="classification", n_seen=100, target_std=0.0, label_counts={1: 100}) is not None
    assert check(task="classification", n_seen=100, target_std=0.3, label_counts={0: 95, 1: 5}) is None


def test_mostly_one_value_regression_targets_fire_and_ordinary_scores_stay_silent():
    """Scores // 5 leave ~93% zeros: nearly constant. Real STS-B-like scores have no dominant value."""
    import random

    from defib.rules.data.d006_constant_labels import ConstantLabels
    from defib.signals.run import PredSignals, Signals

    degenerate = [0.0] * 238 + [1.0] * 18
    p = PredSignals(task="regression", n_seen=256, target_std=0.25, target_mean=0.07, recent_targets=degenerate)
    assert ConstantLabels().check(Signals(preds=p)) is not None
    rng = random.Random(0)
    scores = [round(rng.uniform(0, 5), 1) for _ in range(256)]
    q = PredSignals(task="regression", n_seen=256, target_std=1.4, target_mean=2.5, recent_targets=scores)
    assert ConstantLabels().check(Signals(preds=q)) is None
