"""D007: labels encoded in a way the head and loss cannot use.

Planted: 1..5 star ratings with a 5-logit head (the loss crashes); 1-based ids
with one logit too many; class ids as BCE targets. Near-misses: 0-based ids
with padding rows at the ignore index (-100); 0/1 multi-hot BCE targets.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

from defib.rules.base import Severity
from defib.rules.data.d007_label_encoding import LabelEncoding
from defib.signals.run import LossSignals, PredSignals, Signals


def _stars(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    ids, score = word_data(n, seed=7)
    return ids, torch.bucketize(score, torch.tensor([-2.0, -0.5, 0.5, 2.0])) + 1  # 1..5


def test_one_based_stars_with_five_logits_crash_and_fire():
    ids, stars = _stars()
    assert stars.min() == 1 and stars.max() == 5
    with pytest.raises(IndexError):
        with watch() as w:
            model = BagOfWords(n_out=5)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
            for x, y in batches(ids, stars, size=16):
                loss = F.cross_entropy(model(x), y)  # planted
                opt.zero_grad()
                loss.backward()
                opt.step()
    f = find(w.diagnosis, "D007")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "data.label_encoding" and f.severity == Severity.ERROR
    assert f.evidence["label_max"] == 5 and f.evidence["num_logits"] == 5
    assert "the loss failed" in f.message
    assert_where(f, test_one_based_stars_with_five_logits_crash_and_fire)


def test_one_based_ids_with_a_spare_logit_fire():
    ids, stars = _stars()
    with watch() as w:
        model = BagOfWords(n_out=int(stars.max()) + 1)  # num_labels = max label + 1: logit 0 is never a target
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, stars, size=16):
            loss = F.cross_entropy(model(x), y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "D007")
    assert f is not None and f.severity == Severity.WARNING and "1-based" in f.message
    assert_where(f, test_one_based_ids_with_a_spare_logit_fire)


def test_class_ids_as_bce_targets_fire():
    ids, stars = _stars()
    with watch() as w:
        model = BagOfWords(n_out=1)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, stars.float(), size=16):
            loss = F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "D007")
    assert f is not None and f.evidence["target_max"] == 5
    assert_where(f, test_class_ids_as_bce_targets_fire)


def test_zero_based_ids_with_ignored_rows_are_silent():
    ids, stars = _stars()
    labels = stars - 1
    labels[::8] = -100  # padding rows, skipped by cross_entropy's ignore_index
    with watch() as w:
        model = BagOfWords(n_out=5)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, labels, size=16):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    p = w.watcher.s.preds
    assert p.ignored > 0 and -100 not in p.label_counts  # the ignored rows are no class: left out of the counts
    assert find(w.diagnosis, "D007") is None


def test_multi_hot_bce_targets_are_silent():
    ids, stars = _stars()
    multi_hot = F.one_hot(stars - 1, 5).float()  # (N, 5) of 0/1
    with watch() as w:
        model = BagOfWords(n_out=5)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, multi_hot, size=16):
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert find(w.diagnosis, "D007") is None


def test_rule_on_signals():
    rule = LabelEncoding()
    ce = LossSignals(fn="cross_entropy", family="classification")
    ok = Signals(loss=ce, preds=PredSignals(task="classification", n_classes=3, label_counts={0: 10, 1: 10, 2: 10}))
    assert rule.check(ok) is None
    neg = Signals(loss=ce, preds=PredSignals(task="classification", n_classes=3, label_counts={-1: 5, 0: 10, 1: 10}))
    assert rule.check(neg) is not None
    few = Signals(loss=ce, preds=PredSignals(task="classification", n_classes=4, label_counts={1: 5, 2: 5, 3: 5}))
    assert rule.check(few) is None  # 1-based is only a pattern after min_labels
