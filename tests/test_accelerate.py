"""accelerate loops, written as the transformers no-Trainer examples write them, on the tiny BERT.

``accelerator.prepare`` wraps the optimizer (AcceleratedOptimizer), the
scheduler (AcceleratedScheduler) and the DataLoader (a DataLoaderShard around
a new DataLoader on the user's batch sampler); ``accelerator.accumulate``
makes the wrapped optimizer skip its step and ``zero_grad`` on the micro-steps
between two optimizer steps. defib sees through the wrappers: the inner
optimizer's hooks, the user's DataLoader line, the user's lines for ``where``.

Planted: ``zero_grad`` between backward and step inside ``accumulate``;
no ``zero_grad`` at all inside ``accumulate``; a frozen encoder; an unshuffled
sorted loader; a GradScaler (accelerate's fp16 on a GPU) that skips every step.
Near-miss: the healthy accumulating bf16 loop, whose ``zero_grad`` every
micro-step accelerate skips. ``defib run`` on a script, unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer
from accelerate.state import AcceleratorState, GradientState
from rules.helpers import BertRegressor, assert_where, find, planted_line, sentences, tokenizer, watch
from support import SCRIPTS, assert_healthy, tiny_script
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

ROWS = sentences(640, seed=1)
BATCH = 16
ACCUMULATE = 2
STEPS = len(ROWS) // BATCH // ACCUMULATE


@pytest.fixture(autouse=True)
def fresh_state():
    """accelerate keeps its state in process-wide singletons: each test starts from none, on one thread."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def collate_for(model_dir):
    tok = tokenizer(str(model_dir))

    def collate(batch):
        enc = tok([t for t, _ in batch], padding=True, truncation=True, max_length=32, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"], torch.tensor([y for _, y in batch])
    return collate


def accelerator(accumulate: int = ACCUMULATE) -> Accelerator:
    return Accelerator(mixed_precision="bf16", cpu=True, gradient_accumulation_steps=accumulate)


def test_healthy_accumulating_bf16_loop_is_healthy(tiny_model_dir):
    with watch() as w:
        acc = accelerator()
        model = BertRegressor(tiny_model_dir)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = DataLoader(ROWS, batch_size=BATCH, shuffle=True, collate_fn=collate_for(tiny_model_dir))  # planted
        sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=200)
        model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
        model.train()
        for ids, mask, y in loader:
            with acc.accumulate(model):
                loss = F.mse_loss(model(ids, mask), y)
                acc.backward(loss)
                opt.step()
                sched.step()
                opt.zero_grad()
    assert isinstance(opt, AcceleratedOptimizer)
    assert_healthy(w.diagnosis, STEPS)
    s = w.watcher.s
    o = s.optim
    assert o.optimizer == "AdamW" and set(o.micro_batches) == {ACCUMULATE}
    assert o.zero_grad_calls == STEPS and o.steps_zeroed_before_step == 0  # accelerate skipped the others
    assert o.scheduler == "LambdaLR" and o.scheduler_steps == STEPS and len(o.lr.pairs()) == STEPS
    assert s.loss.scale_factor == pytest.approx(1 / ACCUMULATE)  # accelerator.backward divides the loss
    assert s.preds.n_seen == len(ROWS) and s.data.shuffle is True
    file, line = planted_line(test_healthy_accumulating_bf16_loop_is_healthy)
    assert Path(os.path.abspath(s.data.loader_where.file)) == Path(file) and s.data.loader_where.line == line
    for code in ("O007", "O008", "L005"):
        assert find(w.diagnosis, code) is None, code


def test_zero_grad_between_backward_and_step_inside_accumulate_fires(tiny_model_dir):
    with watch() as w:
        acc = accelerator()
        model = BertRegressor(tiny_model_dir)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = DataLoader(ROWS, batch_size=BATCH, shuffle=True, collate_fn=collate_for(tiny_model_dir))
        model, opt, loader = acc.prepare(model, opt, loader)
        model.train()
        for ids, mask, y in loader:
            with acc.accumulate(model):
                loss = F.mse_loss(model(ids, mask), y)
                acc.backward(loss)
                opt.zero_grad()  # planted
                opt.step()
    f = find(w.diagnosis, "O007")
    assert f is not None and "steps on zeros" in f.message, w.diagnosis.findings
    assert f.evidence["steps_zeroed_before_step"] == STEPS and f.evidence["steps"] == STEPS
    assert w.diagnosis.findings[0].cause == "optim.zero_grad"
    assert_where(f, test_zero_grad_between_backward_and_step_inside_accumulate_fires)


def test_missing_zero_grad_inside_accumulate_fires(tiny_model_dir):
    """accumulate() only skips the clearing the user asks for: without any, gradients add up over the run."""
    with watch() as w:
        acc = accelerator()
        model = BertRegressor(tiny_model_dir)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = DataLoader(ROWS, batch_size=BATCH, shuffle=True, collate_fn=collate_for(tiny_model_dir))
        model, opt, loader = acc.prepare(model, opt, loader)
        model.train()
        for ids, mask, y in loader:
            with acc.accumulate(model):
                loss = F.mse_loss(model(ids, mask), y)
                acc.backward(loss)  # planted
                opt.step()
    f = find(w.diagnosis, "O007")
    assert f is not None and "never cleared" in f.message, w.diagnosis.findings
    assert f.evidence["steps_not_cleared"] == STEPS - 1 and f.evidence["zero_grad_calls"] == 0
    assert_where(f, test_missing_zero_grad_inside_accumulate_fires)


def test_frozen_encoder_is_named(tiny_model_dir):
    with watch() as w:
        acc = accelerator(accumulate=1)
        model = BertRegressor(tiny_model_dir)
        for p in model.encoder.parameters():
            p.requires_grad = False  # planted
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        loader = DataLoader(ROWS, batch_size=BATCH, shuffle=True, collate_fn=collate_for(tiny_model_dir))
        model, opt, loader = acc.prepare(model, opt, loader)
        model.train()
        for ids, mask, y in loader:
            with acc.accumulate(model):
                loss = F.mse_loss(model(ids, mask), y)
                acc.backward(loss)
                opt.step()
                opt.zero_grad()
    f = find(w.diagnosis, "O004")
    assert f is not None and f.cause == "optim.frozen" and "encoder is frozen" in f.message, w.diagnosis.findings
    assert w.diagnosis.findings[0].code == "O004"
    assert_where(f, test_frozen_encoder_is_named)


def test_unshuffled_loader_points_at_the_users_dataloader(tiny_model_dir):
    rows = sorted(ROWS, key=lambda r: r[1])
    with watch() as w:
        acc = accelerator(accumulate=1)
        model = BertRegressor(tiny_model_dir)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = DataLoader(rows, batch_size=BATCH, shuffle=False, collate_fn=collate_for(tiny_model_dir))  # planted
        model, opt, loader = acc.prepare(model, opt, loader)
        model.train()
        for ids, mask, y in loader:
            with acc.accumulate(model):
                loss = F.mse_loss(model(ids, mask), y)
                acc.backward(loss)
                opt.step()
                opt.zero_grad()
    f = find(w.diagnosis, "D004")
    assert f is not None and f.cause == "data.unshuffled", w.diagnosis.findings
    assert_where(f, test_unshuffled_loader_points_at_the_users_dataloader)


def test_scaler_skipping_every_step_inside_accelerate_is_named(tiny_model_dir):
    """On a GPU, fp16 makes accelerate step through a GradScaler; on CPU the test hands it the CPU one."""
    with watch() as w:
        acc = Accelerator(cpu=True)
        acc.scaler = torch.amp.GradScaler("cpu")
        model = BertRegressor(tiny_model_dir)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = DataLoader(ROWS, batch_size=BATCH, shuffle=True, collate_fn=collate_for(tiny_model_dir))
        model, opt, loader = acc.prepare(model, opt, loader)
        model.train()
        for ids, mask, y in loader:
            pred = model(ids, mask)
            loss = F.mse_loss(torch.where(pred > 0, pred.sqrt(), pred), y)  # NaN gradient where pred < 0
            acc.backward(loss)
            opt.step()  # planted
            opt.zero_grad()
    assert opt.step_was_skipped  # accelerate's own view agrees
    d = w.diagnosis
    f = d.findings[0]
    assert f.code == "O009" and f.evidence["scaler_skipped"] == len(ROWS) // BATCH, d.findings
    assert d.steps == len(ROWS) // BATCH and d.verdict != "inconclusive"
    assert w.watcher.s.loss.scale_factor == pytest.approx(1.0)
    assert_where(f, test_scaler_skipping_every_step_inside_accelerate_is_named)


@pytest.mark.parametrize("fault", ["", "zero_grad"])
def test_defib_run_on_an_accelerate_script(fault, tiny_model_dir, defib_run):
    command = tiny_script(tiny_model_dir, *(["--fault", fault] if fault else []), script="tiny_accelerate.py")
    r = defib_run(command=command)
    assert r.report is not None, r
    steps = 640 // 16 // 2
    assert r.report["steps_observed"] == steps, r
    codes = [f["code"] for f in r.report["findings"]]
    if not fault:
        assert r.report["verdict"] == "healthy" and not any(f["severity"] == "error" for f in r.report["findings"]), r
        return
    f = r.report["findings"][0]
    assert f["code"] == "O007", codes
    script = SCRIPTS / "tiny_accelerate.py"
    planted = next(i for i, line in enumerate(script.read_text().splitlines(), 1) if line.endswith("# planted"))
    assert Path(f["where"]["file"]).name == script.name and f["where"]["line"] == planted
