"""``defib.integrations.hf.DefibCallback`` on a real ``Trainer.train()`` with the tiny BERT."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from rules.helpers import assert_where, find, sentences
from support import assert_healthy
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)

from defib.integrations.hf import DefibCallback

STEPS = 60  # past the flatline rule's grace period (30 steps) and its plateau window (20)


def _train(model_dir, tmp_path, *, compute_loss_func=None, json_path=None, scale=1.0):
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = sentences(1000)
    data = [dict(tok(text, truncation=True, max_length=32), labels=score * scale) for text, score in rows]  # planted
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, max_steps=STEPS,
                             learning_rate=1e-3, warmup_steps=5, report_to=[], save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, use_cpu=True, seed=0)
    callback = DefibCallback(json_path=json_path, report=False)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok),
                      callbacks=[callback], compute_loss_func=compute_loss_func)
    trainer.train()
    return callback


def test_healthy_trainer_run_is_healthy(tiny_model_dir, tmp_path):
    cb = _train(tiny_model_dir, tmp_path, json_path=tmp_path / "report.json")
    d = cb.diagnosis
    assert_healthy(d, STEPS)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "healthy" and report["steps_observed"] == STEPS
    assert cb.watcher is None  # hooks removed at train end


def test_shape_mismatch_in_the_trainer_loss_is_found(tiny_model_dir, tmp_path):
    def broadcasting_loss(outputs, labels, num_items_in_batch=None):
        return F.mse_loss(outputs.logits, labels)  # (B, 1) vs (B,): the planted fault

    d = _train(tiny_model_dir, tmp_path, compute_loss_func=broadcasting_loss).diagnosis
    assert d.findings and d.findings[0].code == "L001", [(f.code, f.message) for f in d.findings]
    assert d.exit_code() == 1


def test_labels_the_model_reads_inside_the_trainer_point_at_the_line_that_made_them(tiny_model_dir, tmp_path):
    """The model computes its own loss inside ``trainer.train()``, which passes no targets to follow: ``where`` is
    the one line of the script that puts values under ``labels``."""
    d = _train(tiny_model_dir, tmp_path, scale=0.0).diagnosis
    f = find(d, "D006")
    assert f is not None, [(g.code, g.message) for g in d.findings]
    assert_where(f, _train)
