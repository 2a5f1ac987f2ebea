"""D010: the end-of-run label control, a held-out linear read-out of the encoder's features for the run's labels.

Planted: a watched loop on the tiny BERT checkpoint whose labels were shuffled apart from their texts (the
run flatlines; nothing else explains it). Near-misses: the control on the same rows with their own labels
(the labels are predicted: no finding, and the flatline's note says the labels were checked); a flatline with
a cause (no control); a model with no checkpoint on disk (the control is skipped, and the report says why);
the control turned off. The user's losses and random stream are the same with and without the control. The
read-out itself (evidence/probes/linear_probe.py): labels a linear function of the features are predicted
far beyond their shuffles, labels drawn apart from them are not, and the user's random stream is untouched.
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
from defib.evidence.probes.label_control import run_label_control
from defib.evidence.probes.linear_probe import one_hot, probe_labels

STEPS = 60
BATCH = 16


@pytest.fixture
def tiny_budget(monkeypatch):
    """The control on (its default), whatever the environment of the test session says."""
    monkeypatch.delenv("DEFIB_LABEL_CONTROL", raising=False)


def watched_loop(model_dir, rows, *, steps: int = STEPS, lr: float = 1e-3, from_config: bool = False,
                 detach: bool = False, bce: bool = False):
    """A plain training loop under defib.watch: (the watch, the loss per step). ``bce``: one logit per row
    under binary cross-entropy, the other way to train a binary classifier."""
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1 if bce else 2)
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
            logits = logits.detach() if detach else logits
            y = torch.tensor([y for _, y in batch])
            loss = F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.float()) if bce else \
                F.cross_entropy(logits, y)
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
    assert lc.rows == 256 and lc.labels.rows == 256
    # read at the first encoder call: a script's model is gone by the time ``defib run`` reports at exit
    assert w.watcher.rows.checkpoint == str(tiny_model_dir) and w.watcher.roots() == []
    f = find(d, "D010")
    assert f is not None and f.cause == "data.label_misalignment", (lc.labels, lc.power)
    assert f.evidence["p_value"] > 0.05 and f.evidence["token_label_p_value"] <= 0.01
    assert f.evidence["control_seconds"] > 0
    assert d.findings[0].code == "D010"  # the cause ranks first, the flatline folds under it


@pytest.mark.parametrize("labels, fires", [(SHUFFLED, True), (ALIGNED, False)], ids=["shuffled", "aligned"])
def test_one_logit_under_binary_cross_entropy_is_checked_too(tiny_model_dir, tiny_budget, labels, fires):
    w, _ = watched_loop(tiny_model_dir, labels, bce=True)
    assert w.watcher.rows.task == "regression" and len(w.watcher.rows.rows) > 0
    f = find(w.diagnosis, "D010")
    assert (f is not None) == fires, [(x.code, x.message) for x in w.diagnosis.findings]


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
    assert s.label_control.labels.p_value <= 0.01, s.label_control.labels
    assert find(d, "D010") is None
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
    assert lc is not None and lc.labels is None and "checkpoint folder on disk" in lc.skipped
    assert find(d, "D010") is None
    flat = find(d, "S001")
    assert "checkpoint folder on disk" in flat.evidence["label_control"]
    assert "data.label_misalignment" in flat.evidence["not_visible_in_run"]


def test_switched_off_and_the_users_losses_are_untouched(tiny_model_dir, tiny_budget, monkeypatch):
    with_control, losses_with = watched_loop(tiny_model_dir, SHUFFLED)
    after_with = torch.rand(3)
    monkeypatch.setenv("DEFIB_LABEL_CONTROL", "0")
    without, losses_without = watched_loop(tiny_model_dir, SHUFFLED)
    after_without = torch.rand(3)
    assert with_control.watcher.s.label_control is not None
    assert without.watcher.s.label_control is None and find(without.diagnosis, "D010") is None
    assert losses_with == losses_without
    assert torch.equal(after_with, after_without)  # the user's random stream continues as it would have


def test_rows_are_kept_from_the_first_steps_until_the_sample_is_full(tiny_model_dir, monkeypatch):
    from defib.evidence.watch import rows as rows_module

    monkeypatch.setenv("DEFIB_LABEL_CONTROL", "0")
    w, _ = watched_loop(tiny_model_dir, SHUFFLED, steps=STEPS)
    kept = w.watcher.rows.rows
    assert len(kept) == rows_module.MAX_ROWS  # 60 steps of 16 rows: full after 16 steps, nothing more
    assert all(r.input_ids.shape[0] <= rows_module.MAX_TOKENS for r in kept)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert [(tok.decode(r.input_ids[1:-1]), int(r.target)) for r in kept[:3]] == SHUFFLED[:3]


def test_the_read_out_separates_labels_that_belong_from_labels_that_do_not():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(256, 64, generator=gen)
    y = x[:, :3].sum(1) + torch.randn(256, generator=gen)  # a noisy linear function of the features
    state = torch.random.get_rng_state()
    belongs = probe_labels(x, y)
    apart = probe_labels(x, y[torch.randperm(256, generator=gen)])
    classes = probe_labels(x, one_hot((x[:, 0] > 0).long().tolist()))
    assert torch.equal(state, torch.random.get_rng_state())  # its own generator only
    assert belongs.p_value < 0.01 and belongs.score > 0.3 and belongs.score > belongs.null_q95
    assert classes.p_value < 0.01
    assert apart.p_value > 0.05 and abs(apart.score) < 0.1
    assert probe_labels(x, y) == belongs  # deterministic


def test_a_bi_encoder_keeps_pairs_and_a_two_call_classifier_keeps_nothing(tiny_model_dir, monkeypatch):
    """Two encoder calls (one per text of a pair) before a regression loss on one score a pair: kept as pairs
    (tests/test_label_control_pairs.py runs the control on them). Before a class loss (two views of one
    batch, as R-Drop makes): which rows the targets go with is ambiguous, so nothing is kept."""
    from transformers import AutoModel

    monkeypatch.setenv("DEFIB_LABEL_CONTROL", "0")
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(str(tiny_model_dir))
    head = torch.nn.Linear(64, 2)
    opt = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=1e-3)
    for pairs in (True, False):
        with defib.watch(encoder, opt, announce=None) as w:
            for step in range(10):
                batch = ALIGNED[step * 8:(step + 1) * 8]
                a = encoder(**tok([t for t, _ in batch], padding=True, return_tensors="pt")).last_hidden_state[:, 0]
                b = encoder(**tok([t[::-1] for t, _ in batch], padding=True, return_tensors="pt")).last_hidden_state[:, 0]
                if pairs:
                    loss = F.mse_loss(F.cosine_similarity(a, b), torch.tensor([float(y) for _, y in batch]))
                else:
                    loss = F.cross_entropy(head(torch.cat([a, b], 1)), torch.tensor([y for _, y in batch]))
                opt.zero_grad()
                loss.backward()
                opt.step()
        kept = w.watcher.rows
        assert w.watcher.s.loss is not None and w.watcher.s.loss.calls == 10
        if pairs:
            assert kept.task == "pairs" and len(kept.rows) == 80
            assert kept.rows[0].second.input_ids.tolist() == tok(ALIGNED[0][0][::-1])["input_ids"]
            assert kept.rows[0].target == float(ALIGNED[0][1]) and kept.rows[0].score is not None
        else:
            assert kept.rows == []
            assert not kept.wanted()  # after 8 steps with nothing paired, no encoder batch is copied any more


def test_the_copy_loads_while_the_training_process_exits(tiny_model_dir, tmp_path):
    """``defib run`` reports from an exit handler, after Python stops starting threads (transformers 5 loads
    weights on a thread pool unless told not to)."""
    import subprocess
    import sys

    script = tmp_path / "at_exit.py"
    script.write_text("import atexit\nfrom defib.evidence.probes.checkpoint import load_encoder\n"
                      f"atexit.register(lambda: print(type(load_encoder({str(tiny_model_dir)!r})).__name__))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "BertModel", out.stderr[-2000:]
