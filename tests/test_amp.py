"""Mixed precision on CPU: ``torch.autocast`` forwards and a real ``torch.amp.GradScaler``.

A bfloat16 autocast forward hands the loss bfloat16 predictions: they are read
like float32 ones. A GradScaler multiplies the loss before backward() (defib
reads the user's loss, not the scaled one: no L005 under SGD) and skips every
step whose unscaled gradients hold inf/NaN, calling no optimizer hook: the
skipped steps still count, so a run whose every step is skipped is judged
(O009, with the scaler's own evidence), never inconclusive. Planted: a
``torch.where`` over ``sqrt`` whose untaken branch back-propagates NaN, which
makes the scaler skip every step. Near-misses: a float16 autocast run whose
scaler skips only its first steps while the scale settles; the same fault's
numbers on signals.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from rules.helpers import BertRegressor, assert_where, encode, find, sentences, watch
from support import assert_healthy
from test_watch_cost import HostReads

from defib.rules.optim.o009_nonfinite import NonFinite
from defib.signals.run import OptimSignals, Signals

ROWS = sentences(640, seed=1)
BATCH = 16
STEPS = len(ROWS) // BATCH


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def batches(model_dir):
    for i in range(0, len(ROWS), BATCH):
        enc, y = encode(model_dir, ROWS[i:i + BATCH])
        yield enc["input_ids"], enc["attention_mask"], y


def test_bfloat16_autocast_predictions_are_read(tiny_model_dir):
    dtypes = set()
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for ids, mask, y in batches(tiny_model_dir):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                pred = model(ids, mask)
                loss = F.mse_loss(pred, y)
            dtypes.add(pred.dtype)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert dtypes == {torch.bfloat16}
    assert_healthy(w.diagnosis, STEPS)
    s = w.watcher.s
    assert s.preds.n_seen == len(ROWS) and s.preds.spread.last > 0
    assert len(s.loss.values.pairs()) == STEPS and s.optim.scaler_steps == 0


def test_scaler_that_skips_only_its_first_steps_is_silent(tiny_model_dir):
    """float16 activations overflow at the scaler's first scale (65536): a few skips, then it settles."""
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler("cpu")
        for ids, mask, y in batches(tiny_model_dir):
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.mse_loss(model(ids, mask), y)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    o = w.watcher.s.optim
    assert 1 <= o.scaler_skipped <= 5 and o.scaler_skip_streak == 0 and o.scaler_steps == STEPS
    assert o.scaler_scale_first == 65536.0 and o.scaler_scale_last < o.scaler_scale_first
    assert find(w.diagnosis, "O009") is None
    assert_healthy(w.diagnosis, STEPS)  # the skipped steps count: every iteration is a step
    assert o.grad_total.pairs() and all(v < float("inf") for _, v in o.grad_total.pairs())


def test_scaled_loss_is_not_read_as_the_users_loss_scale(tiny_model_dir):
    """SGD scales its step with the loss: the scaler's 65536 must not look like a loss 65536x too large (L005)."""
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
        scaler = torch.amp.GradScaler("cpu")
        for ids, mask, y in batches(tiny_model_dir):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.mse_loss(model(ids, mask), y)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    assert w.watcher.s.loss.scale_factor == pytest.approx(1.0)
    assert find(w.diagnosis, "L005") is None, w.diagnosis.findings


def test_scaler_skipping_every_step_is_named(tiny_model_dir):
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler("cpu")
        for ids, mask, y in batches(tiny_model_dir):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                pred = model(ids, mask)
                pred = torch.where(pred > 0, pred.sqrt(), pred)  # NaN gradient where pred < 0
                loss = F.mse_loss(pred, y)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)  # planted
            scaler.update()
    d = w.diagnosis
    assert d.steps == STEPS and d.verdict in ("flatlined", "at_risk")  # not inconclusive for want of steps
    f = d.findings[0]
    assert f.code == "O009" and f.cause == "optim.nonfinite", [(x.code, x.message) for x in d.findings]
    assert f.message.startswith(f"GradScaler skipped {STEPS} of {STEPS} steps, scale fell from 6.55e+04 to ")
    assert f.evidence["scaler_skipped"] == STEPS and f.evidence["scale_first"] == 65536.0
    assert f.evidence["scale_last"] < 1e-6
    assert_where(f, test_scaler_skipping_every_step_is_named)
    assert w.watcher.s.optim.nonfinite == {}  # the skipped steps' gradients are the scaler's evidence, not O009's first


class AllReads(HostReads):
    """Every host read, whoever makes it: GradScaler.step reads its inf flags itself, under defib's wrapper."""

    def _counting(self, name, original):
        def read(*args, **kwargs):
            self.calls.append(name)
            return original(*args, **kwargs)
        return read


def _scaler_steps_4_to_8(model_dir, watched: bool) -> list[str]:
    """The host reads of steps 4-8 of a float16 scaler run (steps 1-3 are sampled, 10 would be)."""
    counted = AllReads()
    torch.manual_seed(0)
    with watch() if watched else contextlib.nullcontext():
        model = BertRegressor(model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler("cpu")
        for step, (ids, mask, y) in enumerate(batches(model_dir), 1):
            if step == 9:
                break
            with counted if step >= 4 else contextlib.nullcontext():
                with torch.autocast("cpu", dtype=torch.float16):
                    loss = F.mse_loss(model(ids, mask), y)
                opt.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
    return counted.calls


def test_scaler_steps_read_nothing_between_sampled_steps(tiny_model_dir):
    bare = _scaler_steps_4_to_8(tiny_model_dir, watched=False)
    assert bare  # GradScaler.step reads its own inf flags: the counting sees reads
    assert _scaler_steps_4_to_8(tiny_model_dir, watched=True) == bare


def test_rule_on_scaler_signals():
    rule = NonFinite()

    def scaler(skipped: int, streak: int, steps: int = 40) -> Signals:
        return Signals(step=steps, optim=OptimSignals(param_dtypes=["float32"], scaler_steps=steps,
                                                      scaler_skipped=skipped, scaler_skip_streak=streak,
                                                      scaler_scale_first=65536.0, scaler_scale_last=0.5))

    assert rule.check(scaler(skipped=5, streak=0)) is None     # settling at the start
    assert rule.check(scaler(skipped=20, streak=1)) is None    # every other step: slower, not stuck
    f = rule.check(scaler(skipped=8, streak=8))                # the latest steps all skipped
    assert f is not None and "GradScaler skipped 8 of 40 steps, scale fell from 6.55e+04 to 0.5" in f.message
    assert rule.check(scaler(skipped=38, streak=3)) is not None  # a step now and then gets through
    both = rule.check(Signals(step=40, optim=OptimSignals(param_dtypes=["float32"], nonfinite={"loss": 1},
                                                          scaler_steps=40, scaler_skipped=40,
                                                          scaler_skip_streak=40)))
    assert both is not None and "loss at step 1" in both.message and both.evidence["scaler_skipped"] == 40
