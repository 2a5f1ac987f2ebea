"""BCE on one output per row: a binary classifier's single logit, or a cross-encoder's score regressed through
the loss's sigmoid. Its spread is the sigmoid's across a batch's rows, against the targets' own.

Planted: targets the inputs do not decide (0/1 labels, or 0..1 scores), so the best the model can do is one
probability for every row: S001 must say so. Near-misses: the same shapes with targets the inputs decide,
which the model learns, and defib stays silent about the spread.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import defib

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _data(n: int, scores: bool, decided: bool) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 8, generator=gen)
    signal = x @ torch.randn(8, generator=gen) if decided else torch.randn(n, generator=gen)
    y = torch.sigmoid(signal)
    return x, y if scores else (y > 0.5).float()


def _train(x: torch.Tensor, y: torch.Tensor):
    with defib.watch(announce=None) as w:
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(2):
            for i in range(0, len(x), 32):
                loss = F.binary_cross_entropy_with_logits(model(x[i:i + 32]).squeeze(-1), y[i:i + 32])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return w


@pytest.mark.parametrize("scores", [False, True], ids=["binary_labels", "scores"])
@pytest.mark.parametrize("decided", [False, True], ids=["undecided", "decided"])
def test_one_output_bce_spread_is_read(scores, decided):
    w = _train(*_data(3200, scores, decided))
    p, d = w.watcher.s.preds, w.diagnosis
    assert len(p.spread) > 0, "no spread recorded for one output per row"
    flat = next((f for f in d.findings if f.code == "S001"), None)
    if decided:
        assert flat is None and p.spread.last > 0.3, (p.spread.last, [(f.code, f.message) for f in d.findings])
    else:
        assert flat is not None and d.verdict in ("flatlined", "at_risk"), [(f.code, f.message) for f in d.findings]
