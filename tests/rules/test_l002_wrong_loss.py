"""L002: the loss function does not fit the task.

Planted: BCE-with-logits on continuous 0..5 scores over two outputs per row
(one output per row is a regression through BCE's sigmoid: M003); cross-entropy
fed the scores as soft targets. Near-misses: BCE-with-logits on the scores divided by 5
(a soft-label BCE in [0, 1], a legitimate choice); cross-entropy on
label-smoothed one-hot targets over 3 classes (float targets that are
distributions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

from defib.rules.loss.l002_wrong_loss import WrongLoss
from defib.signals.run import LossSignals, PredSignals, Signals


def _scores(n: int = 160) -> tuple[torch.Tensor, torch.Tensor]:
    ids, score = word_data(n, seed=12)
    return ids, ((score + 4) * 5 / 8).clamp(0, 5) + 0.1 * torch.rand(n)  # continuous 0..5, like STS-B


def _two_scores() -> tuple[torch.Tensor, torch.Tensor]:
    ids, scores = _scores()
    return ids, torch.stack([scores, 5 - scores], dim=1)  # two continuous 0..5 scores per row, as "labels"


def test_bce_on_continuous_scores_fires():
    ids, scores = _two_scores()
    with watch() as w:
        model = BagOfWords(n_out=2)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, scores, size=16):
            loss = F.binary_cross_entropy_with_logits(model(x), y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L002")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "loss.wrong_loss" and "continuous targets" in f.message
    assert_where(f, test_bce_on_continuous_scores_fires)


def test_a_loss_module_of_the_wrong_kind_points_at_the_line_that_chose_it():
    ids, scores = _two_scores()
    with watch() as w:
        model = BagOfWords(n_out=2)
        criterion = torch.nn.BCEWithLogitsLoss()  # planted
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, scores, size=16):
            loss = criterion(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L002")
    assert f is not None and "continuous targets" in f.message, w.diagnosis.findings
    assert_where(f, test_a_loss_module_of_the_wrong_kind_points_at_the_line_that_chose_it)


def test_cross_entropy_on_scores_as_soft_targets_fires():
    ids, scores = _scores()
    soft = torch.stack([5 - scores, scores], dim=1)  # (N, 2), rows summing to 5, not 1
    with watch() as w:
        model = BagOfWords(n_out=2)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, soft, size=16):
            loss = F.cross_entropy(model(x), y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L002")
    assert f is not None and "not distributions" in f.message
    assert_where(f, test_cross_entropy_on_scores_as_soft_targets_fires)


def test_bce_on_scores_scaled_to_unit_interval_is_silent():
    ids, scores = _scores()
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, scores / scores.max(), size=16):
            loss = F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.loss.family == "multilabel"
    assert find(w.diagnosis, "L002") is None
    assert find(w.diagnosis, "D007") is None


def test_cross_entropy_on_label_smoothed_one_hot_targets_is_silent():
    ids, scores = _scores()
    labels = torch.bucketize(scores, torch.tensor([1.5, 3.5]))  # 3 classes
    smoothed = F.one_hot(labels, 3).float() * 0.9 + 0.1 / 3  # rows sum to 1
    with watch() as w:
        model = BagOfWords(n_out=3)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, smoothed, size=16):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.loss.soft_target_max <= 1
    assert find(w.diagnosis, "L002") is None


def test_rule_on_signals():
    rule = WrongLoss()
    one_logit = Signals(loss=LossSignals(fn="cross_entropy", family="classification", input_shape=(8, 1)),
                        preds=PredSignals(task="classification", n_classes=1))
    assert "single logit" in rule.check(one_logit).message
    mse_on_ids = Signals(loss=LossSignals(fn="mse_loss", family="regression", input_shape=(8, 3), target_shape=(8,)),
                         preds=PredSignals(task="regression", target_integer=True))
    assert "classification head" in rule.check(mse_on_ids).message
    fine = Signals(loss=LossSignals(fn="mse_loss", family="regression", input_shape=(8,), target_shape=(8,)),
                   preds=PredSignals(task="regression", target_integer=False, target_max=5.0))
    assert rule.check(fine) is None
    soft = LossSignals(fn="cross_entropy", family="classification", input_shape=(8, 3), target_shape=(8, 3),
                       target_dtype="float32", soft_target_max=1.0)
    preds = PredSignals(task="classification", n_classes=3, target_max=2.0)  # argmax class ids reach 2
    assert rule.check(Signals(loss=soft, preds=preds)) is None
    soft.soft_target_max = 5.0
    assert "not distributions" in rule.check(Signals(loss=soft, preds=preds)).message


def test_nll_on_raw_logits_fires_and_on_log_softmax_stays_silent():
    """nll_loss wants log-probabilities: raw logits let it run to minus infinity."""
    raw = LossSignals(fn="nll_loss", family="classification", logprob_rows_share=0.0)
    raw.values.add(10, -3.5)
    found = WrongLoss().check(Signals(loss=raw, preds=PredSignals(task="classification", n_classes=3)))
    assert found is not None and found.cause == "loss.wrong_loss" and "negative" in found.message
    proper = LossSignals(fn="nll_loss", family="classification", logprob_rows_share=1.0)
    assert WrongLoss().check(Signals(loss=proper, preds=PredSignals(task="classification", n_classes=3))) is None


def test_a_hand_written_loss_that_averages_before_the_absolute_value_fires():
    ids, scores = _scores()
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, scores, size=16):
            loss = torch.abs((model(x).squeeze(-1) - y).mean())  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L002")
    assert f is not None and f.evidence["reduced_first"], w.diagnosis.findings
    assert w.diagnosis.verdict != "inconclusive"
    assert_where(f, test_a_hand_written_loss_that_averages_before_the_absolute_value_fires)


def test_a_hand_written_loss_that_averages_after_the_absolute_value_is_silent():
    ids, scores = _scores()
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(ids, scores, size=16):
            loss = torch.abs(model(x).squeeze(-1) - y).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.loss.fn == "l1_loss" and not w.watcher.s.loss.reduced_first
    assert find(w.diagnosis, "L002") is None
