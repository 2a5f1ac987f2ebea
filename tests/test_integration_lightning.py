"""``defib.integrations.lightning.DefibCallback`` on a real Lightning ``Trainer.fit()`` with the tiny BERT."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from rules.helpers import sentence_loader
from support import assert_healthy
from transformers import AutoModel

from defib.integrations.lightning import DefibCallback

STEPS = 60  # past the flatline rule's grace period (30 steps) and its plateau window (20)


class Regressor(pl.LightningModule):
    def __init__(self, model_dir, broadcast: bool):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(model_dir)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)
        self.broadcast = broadcast
        self.encoder.train()  # from_pretrained returns eval mode, and Lightning 2.6 keeps submodules as they are

    def training_step(self, batch, _):
        enc, y = batch
        mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        h = self.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        pred = self.head((h * mask).sum(1) / mask.sum(1))  # mean over tokens: (B, 1)
        return F.mse_loss(pred, y) if self.broadcast else F.mse_loss(pred.squeeze(-1), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def _fit(model_dir, *, broadcast=False, json_path=None):
    pl.seed_everything(0, verbose=False)
    loader = sentence_loader(model_dir)
    callback = DefibCallback(json_path=json_path, report=False)
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    trainer.fit(Regressor(model_dir, broadcast), loader)
    return callback


def test_healthy_lightning_run_is_healthy(tiny_model_dir, tmp_path):
    cb = _fit(tiny_model_dir, json_path=tmp_path / "report.json")
    d = cb.diagnosis
    assert_healthy(d, STEPS)
    assert json.loads((tmp_path / "report.json").read_text())["verdict"] == "healthy"
    assert cb.watcher is None  # hooks removed at the end of training


def test_shape_mismatch_in_the_lightning_loss_is_found(tiny_model_dir):
    d = _fit(tiny_model_dir, broadcast=True).diagnosis
    assert d.findings and d.findings[0].code == "L001", [(f.code, f.message) for f in d.findings]
    assert d.findings[0].where is not None and d.findings[0].where.code.startswith("return F.mse_loss(pred, y)")
    assert d.exit_code() == 1
