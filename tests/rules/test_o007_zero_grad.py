"""O007: gradients not cleared, or cleared before the step uses them.

Planted: no ``zero_grad`` at all; ``zero_grad`` between ``backward()`` and
``step()``. Near-misses: ``backward(); step(); zero_grad()`` (clearing at the
end of the iteration); ``model.zero_grad()`` instead of the optimizer's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

from defib.rules.optim.o007_zero_grad import ZeroGradPlacement
from defib.signals.run import OptimSignals, Signals

IDS, SCORE = word_data(320, seed=27)


def test_missing_zero_grad_fires():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        for x, y in batches(IDS, SCORE, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            loss.backward()  # planted
            opt.step()
    f = find(w.diagnosis, "O007")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "optim.zero_grad" and "never cleared" in f.message
    assert f.evidence["steps_not_cleared"] == 19 and f.evidence["zero_grad_calls"] == 0
    assert_where(f, test_missing_zero_grad_fires)


def test_a_zero_grad_that_runs_once_before_the_loop_is_the_line_to_move():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        opt.zero_grad()  # planted
        for x, y in batches(IDS, SCORE, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "O007")
    assert f is not None, w.diagnosis.findings
    assert f.evidence["zero_grad_calls"] == 1 and "ran 1 time(s), not once a step" in f.message
    assert_where(f, test_a_zero_grad_that_runs_once_before_the_loop_is_the_line_to_move)


def test_a_loss_cut_from_the_graph_is_not_a_zero_grad_fault():
    """No gradient ever arrives (a loss rebuilt from numpy): O006's cut graph, not gradients cleared too early."""
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, SCORE, size=16):
            pred = model(x).squeeze(-1)
            loss = torch.tensor(float(((pred.detach() - y) ** 2).mean()), requires_grad=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert find(w.diagnosis, "O007") is None, w.diagnosis.findings
    assert find(w.diagnosis, "O006") is not None


def test_zero_grad_between_backward_and_step_fires():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, SCORE, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            loss.backward()
            opt.zero_grad()  # planted
            opt.step()
    f = find(w.diagnosis, "O007")
    assert f is not None and "steps on zeros" in f.message
    assert f.evidence["steps_zeroed_before_step"] == 20
    assert_where(f, test_zero_grad_between_backward_and_step_fires)


def test_points_at_the_misplaced_zero_grad_not_an_earlier_one():
    """A framework (Lightning's fit) may clear the gradients once before the first step: point at the late call."""
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        opt.zero_grad()  # a setup call, in its right place
        for x, y in batches(IDS, SCORE, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            loss.backward()
            opt.zero_grad()  # planted
            opt.step()
    f = find(w.diagnosis, "O007")
    assert f is not None and "steps on zeros" in f.message
    assert_where(f, test_points_at_the_misplaced_zero_grad_not_an_earlier_one)


def test_zero_grad_after_step_is_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, SCORE, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
    assert find(w.diagnosis, "O007") is None


def test_model_zero_grad_before_backward_is_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, SCORE, size=16):
            model.zero_grad()
            loss = F.mse_loss(model(x).squeeze(-1), y)
            loss.backward()
            opt.step()
    assert w.watcher.s.optim.zero_grad_calls == 20
    assert find(w.diagnosis, "O007") is None


def test_rule_on_signals():
    rule = ZeroGradPlacement()
    assert rule.check(Signals(step=10, optim=OptimSignals(steps_without_zero_grad=9))) is not None
    assert rule.check(Signals(step=10, optim=OptimSignals(steps_without_zero_grad=3))) is None  # O008's pattern
    assert rule.check(Signals(step=2, optim=OptimSignals(steps_without_zero_grad=1))) is None  # too early
