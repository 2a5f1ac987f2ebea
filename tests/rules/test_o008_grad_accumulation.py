"""O008: gradient accumulation stepping or clearing at the wrong cadence.

Planted: stepping every micro-batch but clearing every 4th step; 4
micro-batches accumulated into each SGD step without dividing the loss.
Near-misses: ``(loss / k).backward()`` with a step and ``zero_grad`` every k
micro-batches; the same undivided accumulation under AdamW, which is
scale-invariant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

from defib.rules.optim.o008_grad_accumulation import GradAccumulation
from defib.signals.run import LossSignals, OptimSignals, Signals

IDS, SCORE = word_data(640, seed=28)
K = 4


def test_zero_grad_every_k_steps_fires():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        for i, (x, y) in enumerate(batches(IDS, SCORE, size=16)):
            if i % K == 0:
                opt.zero_grad()  # planted
            loss = F.mse_loss(model(x).squeeze(-1), y)
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "O008")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "optim.grad_accumulation" and 0.7 < f.evidence["stale_share"] < 0.8
    assert find(w.diagnosis, "O007") is None  # cleared, just not often enough
    assert_where(f, test_zero_grad_every_k_steps_fires)


def test_undivided_accumulation_with_sgd_fires():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        for i, (x, y) in enumerate(batches(IDS, SCORE, size=16)):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            loss.backward()  # planted
            if (i + 1) % K == 0:
                opt.step()
                opt.zero_grad()
    f = find(w.diagnosis, "O008")
    assert f is not None and f.evidence["micro_batches"] == K
    assert_where(f, test_undivided_accumulation_with_sgd_fires)


def test_loss_divided_by_k_is_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        for i, (x, y) in enumerate(batches(IDS, SCORE, size=16)):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            (loss / K).backward()
            if (i + 1) % K == 0:
                opt.step()
                opt.zero_grad()
    assert w.watcher.s.step == 10 and set(w.watcher.s.optim.micro_batches) == {K}
    assert find(w.diagnosis, "O008") is None


def test_undivided_accumulation_with_adamw_is_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for i, (x, y) in enumerate(batches(IDS, SCORE, size=16)):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            loss.backward()
            if (i + 1) % K == 0:
                opt.step()
                opt.zero_grad()
    assert find(w.diagnosis, "O008") is None


def test_rule_on_signals():
    rule = GradAccumulation()
    sgd = OptimSignals(optimizer="SGD", micro_batches=[4] * 8)
    assert rule.check(Signals(step=8, optim=sgd, loss=LossSignals("mse_loss", "regression", scale_factor=1.0)))
    assert rule.check(Signals(step=8, optim=sgd, loss=LossSignals("mse_loss", "regression", scale_factor=0.25))) is None
    assert rule.check(Signals(step=3, optim=sgd, loss=LossSignals("mse_loss", "regression", scale_factor=1.0))) is None
