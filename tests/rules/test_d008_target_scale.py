"""D008: regression targets on a scale a fresh head cannot reach in time, or that saturates the loss's gradient.

Planted: scores stretched to 0..100; raw 0..5 scores under a Huber loss with delta 1 (hand-written, and
F.huber_loss / F.smooth_l1_loss), where every example above 1 gets the same gradient. Near-misses: raw 0..5
scores under a squared error, which a fresh head reaches without standardising; the same Huber on 0..1
scores; a Huber whose delta matches the 0..5 scale.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

from defib.rules.data.d008_target_scale import TargetScale
from defib.signals.common import Series
from defib.signals.run import LossSignals, PredSignals, Signals


def _train(targets: torch.Tensor) -> None:
    ids, _ = word_data(len(targets), seed=8)
    model = BagOfWords()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for x, y in batches(ids, targets, size=16):
        loss = F.mse_loss(model(x).squeeze(-1), y)  # planted
        opt.zero_grad()
        loss.backward()
        opt.step()


def _scores(n: int = 320) -> torch.Tensor:
    score = word_data(n, seed=8)[1]
    return ((score + 4) * 5 / 8).clamp(0, 5)  # 0..5, like STS-B


def test_targets_on_a_0_to_100_scale_fire():
    with watch() as w:
        _train(_scores() * 20)
    f = find(w.diagnosis, "D008")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "data.target_scale"
    assert f.evidence["target_mean"] > 20 and f.evidence["pred_std"] < f.evidence["target_std"]
    assert_where(f, _train)


def test_raw_0_to_5_scores_are_silent():
    with watch() as w:
        _train(_scores())
    p = w.watcher.s.preds
    assert 1.5 < p.target_mean < 3.5 and p.target_max <= 5
    assert find(w.diagnosis, "D008") is None


def huber(pred: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    err = (pred - target).abs()
    quad = torch.clamp(err, max=delta)
    return (0.5 * quad ** 2 + delta * (err - quad)).mean()


def _train_saturating(scale: float, loss: tuple[str, dict]) -> None:
    name, width = loss
    # resolved here, after defib patched torch.nn.functional; a partial, so the loss is called on the loop's line
    loss_of = functools.partial(getattr(F, name, huber), **width)
    ids, _ = word_data(320, seed=8)
    targets = _scores() * scale  # planted
    model = BagOfWords()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for k in range(0, len(targets), 16):
        idx = torch.arange(k, k + 16)
        loss = loss_of(model(ids[idx]).squeeze(-1), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


LOSSES = {
    "hand-written huber": ("huber", {"delta": 1.0}),
    "F.huber_loss": ("huber_loss", {"delta": 1.0}),
    "F.smooth_l1_loss": ("smooth_l1_loss", {"beta": 1.0}),
}


@pytest.mark.parametrize("loss", LOSSES.values(), ids=LOSSES.keys())
def test_raw_0_to_5_scores_under_a_huber_with_delta_1_fire(loss):
    with watch() as w:
        _train_saturating(1.0, loss)
    f = find(w.diagnosis, "D008")
    assert f is not None, w.diagnosis.findings
    assert f.evidence["saturated_share"] >= TargetScale.saturated_share and abs(f.evidence["pred_start"]) < 0.5
    assert f.evidence["target_mean"] < TargetScale.max_scale  # the output-unit branch would stay silent
    assert "delta" in f.fix
    assert_where(f, _train_saturating)


@pytest.mark.parametrize("scale, loss", [
    (0.2, LOSSES["hand-written huber"]),            # 0..1 scores: every example inside delta
    (1.0, ("huber", {"delta": 5.0})),               # delta on the scores' own scale
    (1.0, ("huber_loss", {"delta": 5.0})),
], ids=["0-1 scores", "hand-written delta 5", "F.huber_loss delta 5"])
def test_a_huber_inside_its_linear_zone_is_silent(scale, loss):
    with watch() as w:
        _train_saturating(scale, loss)
    ls = w.watcher.s.loss
    assert len(ls.grad_saturated) >= 3 and max(v for _, v in ls.grad_saturated.pairs()) < 0.5
    assert find(w.diagnosis, "D008") is None


def test_squared_error_gradients_are_never_one_saturated_push():
    with watch() as w:
        _train_saturating(1.0, ("mse_loss", {}))
    ls = w.watcher.s.loss
    assert len(ls.grad_saturated) >= 3 and max(v for _, v in ls.grad_saturated.pairs()) <= 2 / 16
    assert find(w.diagnosis, "D008") is None


def test_rule_on_signals():
    rule = TargetScale()
    mse = LossSignals(fn="mse_loss", family="regression")

    def check(**kw):
        return rule.check(Signals(loss=mse, preds=PredSignals(task="regression", **kw)))

    assert check(target_mean=50.0, target_std=20.0, window_mean=0.1, window_std=0.1) is not None
    # large targets that the predictions did reach: silent
    assert check(target_mean=50.0, target_std=20.0, window_mean=48.0, window_std=15.0) is None
    assert check(target_mean=2.5, target_std=1.5, window_mean=0.0, window_std=0.01) is None


def test_saturated_branch_on_signals():
    rule = TargetScale()

    def check(saturated: list[float], start: float, fn: str = "huber_loss"):
        ls = LossSignals(fn=fn, family="regression")
        for step, v in zip((1, 2, 10, 20, 30), saturated):
            ls.grad_saturated.add(step, v)
        p = PredSignals(task="regression", target_mean=2.7, target_std=1.4, window_mean=2.8, window_std=0.2)
        p.pred_quantiles["p50"] = Series()
        p.pred_quantiles["p50"].add(1, start)
        return rule.check(Signals(loss=ls, preds=p))

    f = check([0.9, 0.7, 0.85, 0.8, 0.3], start=0.05)
    assert f is not None and f.evidence["saturated_until_step"] == 20 and f.evidence["saturated_share"] == 0.85
    assert check([0.9, 0.2, 0.1, 0.0, 0.0], start=0.05) is None  # one noisy batch, not the run's start
    assert check([0.9, 0.9, 0.9], start=6.0) is None  # a head that started far off, not the targets
    assert check([], start=0.05) is None
