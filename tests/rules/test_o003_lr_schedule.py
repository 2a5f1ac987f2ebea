"""O003: a schedule that holds the learning rate at (near) zero.

Planted: ``get_linear_schedule_with_warmup(num_training_steps=5)`` for a run of
40 steps (steps per epoch passed instead of the total). Near-misses: warmup
then linear decay to 0 at the run's real end; a constant learning rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data
from transformers import get_linear_schedule_with_warmup

from defib.rules.optim.o003_lr_schedule import LearningRateSchedule
from defib.signals.run import OptimSignals, Signals

IDS, SCORE = word_data(640, seed=23)
STEPS = 40


def test_schedule_that_ends_after_5_of_40_steps_fires():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=1, num_training_steps=5)  # planted
        for x, y in batches(IDS, SCORE, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    assert w.watcher.s.step == STEPS
    f = find(w.diagnosis, "O003")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "optim.lr_schedule" and f.evidence["scheduler"] == "LambdaLR"
    assert f.evidence["lr_now"] == 0 and f.evidence["low_share"] > 0.8
    assert_where(f, test_schedule_that_ends_after_5_of_40_steps_fires)


def test_epoch_schedule_stepped_every_batch_points_at_the_step_call():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)  # meant per epoch
        for x, y in batches(IDS, SCORE, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()  # planted
    f = find(w.diagnosis, "O003")
    assert f is not None and f.evidence["scheduler"] == "StepLR", w.diagnosis.findings
    assert_where(f, test_epoch_schedule_stepped_every_batch_points_at_the_step_call)


def test_warmup_then_decay_to_zero_at_the_end_is_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=4, num_training_steps=STEPS)
        for x, y in batches(IDS, SCORE, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    o = w.watcher.s.optim
    assert o.scheduler_steps == STEPS and o.lr.pairs()[0][1] == 0  # warmup starts at 0 ...
    assert find(w.diagnosis, "O003") is None  # ... and the decay ends with the run


def test_rule_on_signals():
    rule = LearningRateSchedule()

    def check(lrs):
        o = OptimSignals(optimizer="AdamW", lr_initial=[1e-3])
        for step, lr in enumerate(lrs, 1):
            o.lr.add(step, lr)
        return rule.check(Signals(step=len(lrs), optim=o))

    assert check([1e-3] * 2 + [0.0] * 8) is not None
    assert check([1e-3] * 10) is None
    assert check([0.0] * 8 + [1e-3] * 2) is None  # a long warmup, but the rate is up now
    lr0 = OptimSignals(optimizer="AdamW", lr_initial=[0.0])
    for step in range(1, 11):
        lr0.lr.add(step, 0.0)
    assert rule.check(Signals(step=10, optim=lr0)) is not None  # lr=0
