"""O010: a warmup longer than the run keeps the learning rate a fraction of the configured one.

Planted: a real transformers ``Trainer`` on the tiny BERT whose
``warmup_steps`` counts examples, ten times its ``max_steps`` (the schedule is
built by the Trainer from its arguments: the finding points at the argument's
value), and a plain loop whose ``get_linear_schedule_with_warmup`` warms up
over ten times its ``num_training_steps``. Near-misses: the same Trainer with
a warmup of 10% of the run; a warmup longer than the run on a learning rate
high enough that the run learns anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, sentences, watch, word_data
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments, get_linear_schedule_with_warmup)

STEPS = 40  # past the grace period (30 steps)
IDS, SCORE = word_data(STEPS * 16, seed=41)


def _trainer_run(model_dir, tmp_path, warmup_steps: int, arguments=TrainingArguments):
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    data = [dict(tok(text, truncation=True, max_length=32), labels=score) for text, score in sentences(STEPS * 16)]
    with watch() as w:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
        args = arguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, max_steps=STEPS,
                         learning_rate=5e-5, report_to=[], save_strategy="no", logging_strategy="no",
                         warmup_steps=warmup_steps,  # planted
                         disable_tqdm=True, use_cpu=True, seed=0)
        Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok)).train()
    return w


def test_trainer_warmup_counted_in_examples_fires(tiny_model_dir, tmp_path):
    warmup = len(sentences(STEPS * 16)) // 2  # examples, not steps
    w = _trainer_run(tiny_model_dir, tmp_path, warmup)
    o = w.watcher.s.optim
    assert (o.planned_steps, o.warmup_steps) == (STEPS, warmup)  # read from the Trainer's own schedule
    f = find(w.diagnosis, "O010")
    assert f is not None, [(x.code, x.message) for x in w.diagnosis.findings]
    e = f.evidence
    assert f.cause == "optim.lr_schedule" and e["planned_steps"] == STEPS and e["warmup_steps"] == warmup
    assert e["configured_lr"] == 5e-5 and e["max_applied_lr"] <= 5e-5 * STEPS / warmup * 1.001
    assert w.diagnosis.findings[0].cause == "optim.lr_schedule"
    assert_where(f, _trainer_run)  # the argument the Trainer built its schedule from


def test_a_dataclass_subclass_of_the_arguments_is_read_too(tiny_model_dir, tmp_path):
    """Seq2SeqTrainingArguments (as sentence-transformers' own) is a dataclass whose generated __init__ never calls
    TrainingArguments.__init__: the arguments are read at __post_init__, which it does call."""
    from transformers import Seq2SeqTrainingArguments

    w = _trainer_run(tiny_model_dir, tmp_path, len(sentences(STEPS * 16)) // 2, arguments=Seq2SeqTrainingArguments)
    f = find(w.diagnosis, "O010")
    assert f is not None, [(x.code, x.message) for x in w.diagnosis.findings]
    assert_where(f, _trainer_run)
    assert w.watcher.optim.training_args_where is not None  # the learning_rate= line, for the lr rules


def test_trainer_warmup_of_a_tenth_of_the_run_is_silent(tiny_model_dir, tmp_path):
    w = _trainer_run(tiny_model_dir, tmp_path, STEPS // 10)
    assert w.watcher.s.optim.warmup_steps == STEPS // 10
    assert find(w.diagnosis, "O010") is None
    assert all(f.cause != "optim.lr_schedule" for f in w.diagnosis.findings), w.diagnosis.findings


def test_plain_loop_schedule_that_never_finishes_warming_up_fires():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=10 * STEPS,  # planted
                                                num_training_steps=STEPS)
        for x, y in batches(IDS, SCORE, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    f = find(w.diagnosis, "O010")
    assert f is not None, [(x.code, x.message) for x in w.diagnosis.findings]
    assert f.evidence["plan_source"] == "get_linear_schedule_with_warmup"
    assert f.evidence["max_applied_lr"] < 0.11 * 1e-3
    assert_where(f, test_plain_loop_schedule_that_never_finishes_warming_up_fires)


def test_long_warmup_on_a_run_that_learns_anyway_is_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=0.3)  # a tenth of it still learns this toy task
        sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=10 * STEPS, num_training_steps=STEPS)
        for x, y in batches(IDS, SCORE, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    p = w.watcher.s.preds
    assert p.loss_window.last < 0.9 * p.baseline.last  # it learned
    assert w.watcher.s.optim.warmup_steps == 10 * STEPS
    assert find(w.diagnosis, "O010") is None

