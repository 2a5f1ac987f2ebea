"""D010: the label-permutation control at the end of a flatlined run with no cause.

Planted: a watched loop on the tiny BERT checkpoint whose labels were shuffled apart from their texts (the
run flatlines; nothing else explains it). Near-misses: the control on the same rows with their own labels
(labels carry over: no finding, and the flatline's note says the labels were checked); a flatline with a
cause (no control); a model with no checkpoint on disk (the control is skipped, and the report says why);
the control off (its default). The user's losses are the same with and without the control.

The control's default budget (defib probe's: 16 steps of 8 rows) is sized for a pretrained encoder; the
tiny random-looking BERT needs more steps at a higher lr to learn a word-presence task, so the tests give it
those (``TINY_BUDGET``), as the probe tests do for their model.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
import torch.nn.functional as F
from helpers import find
from probing import shuffled_labels, word_rows
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import defib
from defib.diagnosis import diagnose
from defib.evidence.probes import Budget
from defib.evidence.probes import label_control as control_module
from defib.evidence.probes.label_control import run_label_control

TINY_BUDGET = Budget(max_rows=128, batch_size=16, permutation_steps=40, lr_bounds=(1e-2, 1e-2))
STEPS = 60
BATCH = 16


@pytest.fixture
def tiny_budget(monkeypatch):
    """The control switched on (it is off by default), at the budget the tiny BERT needs."""
    monkeypatch.setattr(control_module, "CONTROL_BUDGET", TINY_BUDGET)
    monkeypatch.setenv("DEFIB_LABEL_CONTROL", "1")


def watched_loop(model_dir, rows, *, steps: int = STEPS, lr: float = 1e-3, from_config: bool = False,
                 detach: bool = False):
    """A plain training loop under defib.watch: (the watch, the loss per step)."""
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=2)
    if from_config:  # the same weights, but the config no longer names a folder on disk
        model.config._name_or_path = "not-on-disk"
    # left in eval mode, as from_pretrained returns it (no dropout): the shuffled run then collapses every time
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    with defib.watch(model, opt, announce=None) as w:
        for step in range(steps):
            at = (step * BATCH) % len(rows)
            batch = rows[at:at + BATCH]
            enc = tok([t for t, _ in batch], padding=True, return_tensors="pt")
            logits = model(**enc).logits
            loss = F.cross_entropy(logits.detach() if detach else logits, torch.tensor([y for _, y in batch]))
            opt.zero_grad()
            if loss.requires_grad:
                loss.backward()
            opt.step()
            losses.append(loss.item())
    return w, losses


def lopsided_rows() -> list[tuple[str, int]]:
    """256 word-presence rows, 5 in 8 positive: shuffled apart from their texts, the loop collapses onto the
    majority (a flatline), yet the majority stays under L004's share, so no other cause explains it."""
    rows = word_rows(600, seed=0)
    mixed = [r for r in rows if r[1] == 1][:160] + [r for r in rows if r[1] == 0][:96]
    random.Random(1).shuffle(mixed)
    return mixed


ALIGNED = lopsided_rows()
SHUFFLED = shuffled_labels(ALIGNED, seed=0)


def test_shuffled_labels_in_a_flatlined_run_fire(tiny_model_dir, tiny_budget):
    w, _ = watched_loop(tiny_model_dir, SHUFFLED)
    d = w.diagnosis
    assert d.verdict == "flatlined", d.findings
    lc = w.watcher.s.label_control
    assert lc is not None and lc.skipped is None, lc
    assert lc.rows <= 256 and lc.probe.permutation.held_out >= 48
    f = find(d, "D010")
    assert f is not None and f.cause == "data.label_misalignment", (lc.probe.permutation, lc.power)
    assert f.evidence["held_out_loss_real"] > 0 and f.evidence["control_seconds"] > 0
    assert d.findings[0].code == "D010"  # the cause ranks first, the flatline folds under it


def test_aligned_rows_carry_over_and_the_flatline_says_the_labels_were_checked(tiny_model_dir, tiny_budget):
    w, _ = watched_loop(tiny_model_dir, SHUFFLED)
    s = w.watcher.s
    # the same rows, each with its own label: what the control says when the labels do belong
    aligned = dict(ALIGNED)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    rows = []
    for r in w.watcher.rows.rows:
        text = tok.decode(r.input_ids[1:-1])
        rows.append(dataclasses.replace(r, target=float(aligned[text])))
    s.label_control = run_label_control(rows, "classification", str(tiny_model_dir), 1000)
    assert s.label_control.skipped is None
    d = diagnose(s)
    assert find(d, "D010") is None, s.label_control.probe.permutation
    flat = find(d, "S001")
    assert flat is not None
    assert "data.label_misalignment" not in flat.evidence["not_visible_in_run"]
    assert "labels do go with their texts" in flat.fix


def test_a_flatline_with_a_cause_runs_no_control(tiny_model_dir, tiny_budget):
    w, _ = watched_loop(tiny_model_dir, SHUFFLED, detach=True)
    assert any(f.cause for f in w.diagnosis.findings), w.diagnosis.findings
    assert w.watcher.s.label_control is None
    assert find(w.diagnosis, "D010") is None


def test_no_checkpoint_on_disk_is_said_plainly(tiny_model_dir, tiny_budget):
    w, _ = watched_loop(tiny_model_dir, SHUFFLED, from_config=True)
    d = w.diagnosis
    assert d.verdict == "flatlined"
    lc = w.watcher.s.label_control
    assert lc is not None and lc.probe is None and "checkpoint folder on disk" in lc.skipped
    assert find(d, "D010") is None
    flat = find(d, "S001")
    assert "checkpoint folder on disk" in flat.evidence["label_control"]
    assert "data.label_misalignment" in flat.evidence["not_visible_in_run"]


def test_switched_off_and_the_users_losses_are_untouched(tiny_model_dir, tiny_budget, monkeypatch):
    with_control, losses_with = watched_loop(tiny_model_dir, SHUFFLED)
    after_with = torch.rand(3)
    monkeypatch.delenv("DEFIB_LABEL_CONTROL")  # off by default
    without, losses_without = watched_loop(tiny_model_dir, SHUFFLED)
    after_without = torch.rand(3)
    assert with_control.watcher.s.label_control is not None
    assert without.watcher.s.label_control is None and find(without.diagnosis, "D010") is None
    assert losses_with == losses_without
    assert torch.equal(after_with, after_without)  # the user's random stream continues as it would have


def test_rows_are_bounded_and_kept_only_on_sampled_steps(tiny_model_dir, tiny_budget, monkeypatch):
    from defib.evidence.watch import rows as rows_module

    monkeypatch.setenv("DEFIB_LABEL_CONTROL", "0")
    w, _ = watched_loop(tiny_model_dir, SHUFFLED, steps=STEPS)
    sampled = sum(1 for s in range(STEPS) if w.watcher.sampled(s))
    assert len(w.watcher.rows.rows) == min(rows_module.MAX_ROWS, sampled * BATCH)
    assert all(r.input_ids.shape[0] <= rows_module.MAX_TOKENS for r in w.watcher.rows.rows)


def test_a_bi_encoder_keeps_no_rows(tiny_model_dir, monkeypatch):
    """Two encoder calls (one per text of a pair) before each loss: which rows the targets go with is ambiguous."""
    from transformers import AutoModel

    monkeypatch.setenv("DEFIB_LABEL_CONTROL", "0")
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(str(tiny_model_dir))
    opt = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    with defib.watch(encoder, opt, announce=None) as w:
        for step in range(4):
            batch = ALIGNED[step * 8:(step + 1) * 8]
            a = encoder(**tok([t for t, _ in batch], padding=True, return_tensors="pt")).last_hidden_state[:, 0]
            b = encoder(**tok([t[::-1] for t, _ in batch], padding=True, return_tensors="pt")).last_hidden_state[:, 0]
            loss = F.mse_loss(F.cosine_similarity(a, b), torch.tensor([float(y) for _, y in batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.loss is not None and w.watcher.s.loss.calls == 4  # the loss was seen, its rows were not kept
    assert w.watcher.rows.rows == []
