"""STS-B similarity regression with PyTorch Lightning: a MiniLM cross-encoder."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import warnings

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

from defib.demos.data import load_stsb, model_path

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")

parser = argparse.ArgumentParser()
parser.add_argument("--max-steps", type=int, default=200)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

L.seed_everything(args.seed, workers=True, verbose=False)


class STSBDataModule(L.LightningDataModule):
    def __init__(self, batch_size=16, max_length=128, n_train=3600, n_dev=500):
        super().__init__()
        self.batch_size = batch_size
        self.max_length = max_length
        self.n_train = n_train
        self.n_dev = n_dev
        self.tokenizer = AutoTokenizer.from_pretrained(model_path())

    def setup(self, stage=None):
        train = load_stsb("train")
        dev = load_stsb("dev")
        rng = np.random.RandomState(1234)
        tr_idx = rng.permutation(len(train))[: self.n_train]
        dv_idx = rng.permutation(len(dev))[: self.n_dev]
        self.train_rows = [(train.sentence1[i], train.sentence2[i], train.score[i]) for i in tr_idx]
        self.dev_rows = [(dev.sentence1[i], dev.sentence2[i], dev.score[i]) for i in dv_idx]
        scores = np.array([r[2] for r in self.train_rows], dtype=np.float32)
        self.mean, self.std = float(scores.mean()), float(scores.std())

    def collate(self, rows):
        s1, s2, y = zip(*rows)
        batch = dict(self.tokenizer(list(s1), list(s2), padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt"))
        batch["labels"] = (torch.tensor(y, dtype=torch.float) - self.mean) / self.std
        return batch

    def train_dataloader(self):
        return DataLoader(self.train_rows, batch_size=self.batch_size, shuffle=True,
                          collate_fn=self.collate)

    def dev_dataloader(self):
        return DataLoader(self.dev_rows, batch_size=64, shuffle=False, collate_fn=self.collate)


class CrossEncoder(L.LightningModule):
    def __init__(self, lr=4e-5, head_lr=1e-3, weight_decay=0.01, warmup_ratio=0.1, total_steps=200):
        super().__init__()
        self.save_hyperparameters()
        self.encoder = AutoModel.from_pretrained(model_path())
        self.encoder.train()  # from_pretrained returns the model in eval mode
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))

    def training_step(self, batch, batch_idx):
        labels = batch.pop("labels")
        preds = self(**batch)
        loss = F.mse_loss(preds, labels)
        if self.global_step % 20 == 0:
            print(f"step {self.global_step} loss {loss.item():.4f}")
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW([
            {"params": self.encoder.parameters(), "lr": hp.lr},
            {"params": self.head.parameters(), "lr": hp.head_lr},
        ], weight_decay=hp.weight_decay)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, int(hp.warmup_ratio * hp.total_steps), hp.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


dm = STSBDataModule()
dm.setup()
model = CrossEncoder(total_steps=args.max_steps)
trainer = L.Trainer(max_steps=args.max_steps, accelerator="cpu", devices=1, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False,
                    num_sanity_val_steps=0, limit_val_batches=0)
trainer.fit(model, train_dataloaders=dm.train_dataloader())

model.eval()
all_preds, all_gold = [], []
with torch.no_grad():
    for batch in dm.dev_dataloader():
        labels = batch.pop("labels")
        out = model(**batch).view(-1)
        all_preds.append((out * dm.std + dm.mean).numpy())
        all_gold.append((labels * dm.std + dm.mean).numpy())
preds = np.concatenate(all_preds)
gold = np.concatenate(all_gold)
pearson = float(np.corrcoef(preds, gold)[0, 1])
print(f"DEV_METRIC pearson={pearson:.4f} pred_std={preds.std():.4f}")
