"""S001: predictions have collapsed to (nearly) one value or one class.

Planted: the (B, 1)-against-(B,) broadcasting loss (L001), which pulls every
prediction to the batch mean: after 60 steps the predictions are flat, and
L001 is ranked above the symptom. Near-misses: the same model trained right;
a fresh head that is still flat inside the grace period.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import BagOfWords, batches, find, watch, word_data

from defib.rules.symptom.s001_flat_predictions import FlatPredictions
from defib.signals.run import PredSignals, Signals

IDS, SCORE = word_data(60 * 128, seed=35)  # 60 steps of 128: the loss window is not too noisy


@pytest.mark.filterwarnings("ignore:Using a target size:UserWarning")
def test_broadcasting_loss_flatlines_and_fires():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, SCORE, size=128):
            loss = F.mse_loss(model(x), y)  # (128, 1) against (128,)
            opt.zero_grad()
            loss.backward()
            opt.step()
    d = w.diagnosis
    f = find(d, "S001")
    assert f is not None, d.findings
    assert f.cause is None  # a symptom
    assert f.evidence["spread_ratio"] < 0.1 and f.evidence["loss"] >= 0.9 * f.evidence["baseline_loss"]
    assert d.verdict == "flatlined" and d.flatline["step"] >= 30
    assert d.findings[0].code == "L001" and "S001" in d.findings[0].symptoms  # folded under its cause


def test_healthy_training_is_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, SCORE, size=128):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    d = w.diagnosis
    assert d.steps == 60 and w.watcher.s.preds.spread.last > 0.5
    assert find(d, "S001") is None
    assert d.verdict == "healthy", d.findings


def test_flat_fresh_head_inside_the_grace_period_is_silent():
    with watch() as w:
        model = BagOfWords()
        torch.nn.init.zeros_(model.head.weight)  # starts exactly flat
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for x, y in list(batches(IDS, SCORE, size=128))[:20]:
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.preds.spread.last < 0.1  # flat ...
    assert find(w.diagnosis, "S001") is None  # ... but only 20 steps in


def _signals(spreads: list[float], loss: float, baseline: float, step: int = 40) -> Signals:
    p = PredSignals(task="regression", window_std=0.01, target_std=1.0)
    for i, v in enumerate(spreads):
        p.spread.add(step - len(spreads) + 1 + i, v)
    p.loss_window.add(step, loss)
    p.baseline.add(step, baseline)
    return Signals(step=step, preds=p)


def test_rule_on_signals():
    rule = FlatPredictions()
    assert rule.check(_signals([0.5, 0.05, 0.04, 0.03], loss=1.0, baseline=1.0)).evidence["since_step"] == 38
    assert rule.check(_signals([0.5, 0.5, 0.04, 0.03], loss=1.0, baseline=1.0)) is None  # not sustained
    # cautious but right: small spread, perfectly correlated, loss clearly under the baseline
    assert rule.check(_signals([0.09, 0.09, 0.09], loss=0.8, baseline=1.0)) is None
    assert rule.check(_signals([0.0, 0.0, 0.0], loss=1.0, baseline=1.0, step=20)) is None  # grace period


def test_a_flatline_no_cause_explains_points_to_the_commands_that_can():
    """Labels shuffled apart from their inputs: flat at the baseline, and no rule can see why from the run."""
    gen = torch.Generator().manual_seed(3)
    shuffled = SCORE[torch.randperm(len(SCORE), generator=gen)]
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for x, y in batches(IDS, shuffled, size=128):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    d = w.diagnosis
    f = find(d, "S001")
    assert d.verdict == "flatlined" and f is not None, d.findings
    assert not d.causes, d.causes
    assert "defib probe" in f.fix and "data.label_misalignment" in f.evidence["not_visible_in_run"]


@pytest.mark.filterwarnings("ignore:Using a target size:UserWarning")
def test_a_flatline_under_a_cause_keeps_pointing_at_the_cause():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, SCORE, size=128):
            loss = F.mse_loss(model(x), y)  # (128, 1) against (128,): L001 explains the flatline
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "S001")
    assert f is not None and "not_visible_in_run" not in f.evidence and "root cause listed first" in f.fix
