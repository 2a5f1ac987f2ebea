"""O011: backward() runs again and again, but the optimizer never steps.

Planted: an accumulation loop whose condition counts updates instead of
micro-batches, so it never comes true. Near-miss: the same loop counting
micro-batches (64 backward calls, 16 steps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

IDS, SCORE = word_data(64 * 8, seed=51)


def _accumulate(count_updates: bool):
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        update = 0
        for i, (x, y) in enumerate(batches(IDS, SCORE, size=8)):
            (F.mse_loss(model(x).squeeze(-1), y) / 4).backward()
            if ((update if count_updates else i) + 1) % 4 == 0:  # planted
                opt.step()
                opt.zero_grad()
                update += 1
    return w


def test_an_accumulation_condition_that_never_comes_true_fires():
    w = _accumulate(count_updates=True)
    d = w.diagnosis
    f = find(d, "O011")
    assert f is not None, d.findings
    assert f.cause == "optim.grad_accumulation" and f.evidence["backward_calls"] == 64
    assert d.verdict == "at_risk"  # not "inconclusive": a cause is seen although no step was taken
    assert_where(f, _accumulate)


def test_an_accumulation_loop_that_steps_is_silent():
    w = _accumulate(count_updates=False)
    assert w.diagnosis.steps == 16
    assert find(w.diagnosis, "O011") is None
