"""D008: regression targets on a scale a fresh head cannot reach in time.

Planted: scores stretched to 0..100. Near-miss: raw STS-B-like 0..5 scores,
which a fresh head reaches without standardising.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

from defib.rules.data.d008_target_scale import TargetScale
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


def test_rule_on_signals():
    rule = TargetScale()
    mse = LossSignals(fn="mse_loss", family="regression")

    def check(**kw):
        return rule.check(Signals(loss=mse, preds=PredSignals(task="regression", **kw)))

    assert check(target_mean=50.0, target_std=20.0, window_mean=0.1, window_std=0.1) is not None
    # large targets that the predictions did reach: silent
    assert check(target_mean=50.0, target_std=20.0, window_mean=48.0, window_std=15.0) is None
    assert check(target_mean=2.5, target_std=1.5, window_mean=0.0, window_std=0.01) is None
