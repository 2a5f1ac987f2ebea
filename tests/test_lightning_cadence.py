"""A per-step warmup schedule that Lightning steps once per epoch: O003 points at the setting that makes it so.

Planted: ``configure_optimizers`` returns ``[optimizer], [scheduler]`` (Lightning's default interval, the epoch)
around transformers' ``get_linear_schedule_with_warmup``; an epoch outlasts the run, so the learning rate stays at
the warmup's first value, 0. Near-miss: the same schedule with ``"interval": "step"`` warms up and trains.
"""

from __future__ import annotations

import textwrap

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from rules.helpers import assert_where, find, sentence_loader, watch
from transformers import AutoModel, get_linear_schedule_with_warmup

from defib.evidence.lightning_cadence import cadence_line

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 40  # an epoch of 1000 rows in batches of 16 is 63 steps: a per-epoch scheduler is never stepped


class Warmup(pl.LightningModule):
    def __init__(self, model_dir):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(model_dir)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)
        self.encoder.train()

    def training_step(self, batch, _):
        enc, y = batch
        h = self.encoder(**enc).last_hidden_state[:, 0]
        return F.mse_loss(self.head(h).squeeze(-1), y)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3)
        scheduler = get_linear_schedule_with_warmup(optimizer, 4, STEPS)
        return [optimizer], [scheduler]  # planted


class StepWarmup(Warmup):
    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3)
        scheduler = get_linear_schedule_with_warmup(optimizer, 4, STEPS)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _fit(model_dir, module):
    pl.seed_everything(0, verbose=False)
    loader = sentence_loader(model_dir)
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with watch() as w:
        trainer.fit(module(model_dir), loader)
    return w.diagnosis


def test_a_warmup_lightning_steps_per_epoch_points_at_the_return(tiny_model_dir):
    d = _fit(tiny_model_dir, Warmup)
    f = find(d, "O003")
    assert f is not None, [(g.code, g.message) for g in d.findings]
    assert f.evidence["scheduler_steps"] == 0 and '"interval": "step"' in f.fix
    assert_where(f, Warmup)


def test_the_same_warmup_stepped_per_step_is_silent(tiny_model_dir):
    d = _fit(tiny_model_dir, StepWarmup)
    assert find(d, "O003") is None, [(g.code, g.message) for g in d.findings]


SOURCE = textwrap.dedent('''\
    class A:
        def configure_optimizers(self):
            opt = make()
            sched = warmup(opt)
            return {"optimizer": opt,
                    "lr_scheduler": {"scheduler": sched,
                                     "interval": "epoch"}}

    class B:
        def configure_optimizers(self):
            opt = make()
            return {"optimizer": opt, "lr_scheduler": {"scheduler": warmup(opt), "interval": "step"}}

    def elsewhere():
        sched = warmup(make())
        return sched
''')


def test_cadence_line_reads_the_interval_entry(tmp_path):
    path = tmp_path / "module.py"
    path.write_text(SOURCE)
    assert cadence_line(str(path), 4) == 7          # "interval": "epoch"
    assert cadence_line(str(path), 12) is None      # asks for steps
    assert cadence_line(str(path), 15) is None      # not a configure_optimizers
