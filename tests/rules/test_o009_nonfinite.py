"""O009: NaN or Inf in the loss, the gradients or the weights.

Planted: a hand-written binary cross-entropy on unscaled features: the sigmoid
saturates to exactly 1.0 and ``log(1 - p)`` is -inf; a model in float16 under
AdamW. Near-misses: ``binary_cross_entropy_with_logits`` on the same logits
(numerically safe); float32 weights with a bfloat16 autocast forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data
from torch import nn

from defib.rules.base import Severity
from defib.rules.optim.o009_nonfinite import NonFinite
from defib.signals.run import OptimSignals, Signals


def _unscaled(n: int = 320) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw counts and ages as features (not standardised): logits of 100+ from the first step."""
    g = torch.Generator().manual_seed(29)
    x = torch.cat([torch.randint(0, 500, (n, 3), generator=g), torch.randint(18, 90, (n, 1), generator=g)], 1).float()
    return x, (x[:, 3] > 50).float()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(4, 1)


def test_hand_written_log_loss_that_saturates_fires():
    x, labels = _unscaled()
    with watch() as w:
        model = _model()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for xb, yb in batches(x, labels, size=32):
            p = torch.sigmoid(model(xb).squeeze(-1))
            loss = -(yb * torch.log(p) + (1 - yb) * torch.log(1 - p)).mean()  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "O009")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "optim.nonfinite" and f.evidence["first_nonfinite"]["loss"] == 1
    assert w.watcher.s.loss.fn == "binary_cross_entropy"  # read from backward()'s graph
    assert_where(f, test_hand_written_log_loss_that_saturates_fires)  # at the line that computes the loss


def test_bce_with_logits_on_the_same_logits_is_silent():
    x, labels = _unscaled()
    with watch() as w:
        model = _model()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for xb, yb in batches(x, labels, size=32):
            loss = F.binary_cross_entropy_with_logits(model(xb).squeeze(-1), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.loss.first > 1  # large, but finite
    assert find(w.diagnosis, "O009") is None


def test_half_precision_weights_under_adamw_fire():
    """``where`` is the line that cast the weights, the one to change (not the optimizer's)."""
    ids, score = word_data(160, seed=29)
    with watch() as w:
        model = BagOfWords().half()  # planted
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for x, y in batches(ids, score.half(), size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "O009")
    assert f is not None and f.evidence["param_dtypes"] == ["float16"]
    assert_where(f, test_half_precision_weights_under_adamw_fire)


def test_a_cast_with_to_is_where_the_weights_went_bfloat16():
    ids, score = word_data(160, seed=29)
    with watch() as w:
        model = BagOfWords()
        model.to("cpu")  # a device move: not the cast
        model.to(torch.bfloat16)  # planted
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for x, y in batches(ids, score.bfloat16(), size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "O009")
    assert f is not None and f.evidence["param_dtypes"] == ["bfloat16"]
    assert_where(f, test_a_cast_with_to_is_where_the_weights_went_bfloat16)


def test_float32_weights_with_bfloat16_autocast_are_silent():
    ids, score = word_data(160, seed=29)
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for x, y in batches(ids, score, size=16):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                pred = model(x).squeeze(-1)
            loss = F.mse_loss(pred.float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.optim.param_dtypes == ["float32"]
    assert find(w.diagnosis, "O009") is None
    assert w.watcher.s.optim.half_cast_where is None


def test_rule_on_signals():
    rule = NonFinite()
    assert rule.check(Signals(optim=OptimSignals(param_dtypes=["float32"]))) is None
    f = rule.check(Signals(optim=OptimSignals(param_dtypes=["float32"], nonfinite={"grad": 7, "weight": 8})))
    assert f is not None and f.severity == Severity.ERROR and "grad at step 7" in f.message


def _counts(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts 0..8 (how many ids below 8): about one row in ten is 0, whose log is -inf."""
    ids, _ = word_data(n, seed=8)
    return ids, (ids < 8).sum(1).float()


def _train_on(ids: torch.Tensor, counts: torch.Tensor, safe: bool) -> object:
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, c in batches(ids, counts, size=16):
            y = torch.log1p(c) if safe else torch.log(c)  # planted
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w


def test_targets_made_infinite_by_their_transform_point_at_it():
    """log(count) with counts of 0: the loss is infinite from the first batch holding one; the cause is the
    non-finite loss (not a missing label: D006 stays silent) and ``where`` is the transform's line."""
    ids, counts = _counts()
    assert (counts == 0).any()
    w = _train_on(ids, counts, safe=False)
    f = find(w.diagnosis, "O009")
    assert f is not None, w.diagnosis.findings
    assert f.evidence["infinite_targets"] == int((counts == 0).sum()) and "log1p" in f.fix
    assert find(w.diagnosis, "D006") is None, [(g.code, g.message) for g in w.diagnosis.findings]
    assert_where(f, _train_on)


def test_a_finite_transform_of_the_same_counts_is_silent():
    ids, counts = _counts()
    w = _train_on(ids, counts, safe=True)
    assert find(w.diagnosis, "O009") is None and find(w.diagnosis, "D006") is None, w.diagnosis.findings
