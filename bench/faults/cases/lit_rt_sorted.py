"""Rotten Tomatoes fresh / rotten / plot classification with PyTorch Lightning.

Manual optimization (so gradient clipping and the LR schedule are explicit).
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import warnings

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                          get_linear_schedule_with_warmup)

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")

parser = argparse.ArgumentParser()
parser.add_argument("--max-steps", type=int, default=200)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

L.seed_everything(args.seed, workers=True, verbose=False)

MAX_LEN = 96
N_TRAIN, N_DEV = 4000, 600
tokenizer = AutoTokenizer.from_pretrained(model_path())


def stratified_split(labels, n_train, n_dev, seed=1234):
    """Per-class split that keeps the class shares in both train and dev."""
    rng = np.random.RandomState(seed)
    labels = np.asarray(labels)
    train_idx, dev_idx = [], []
    for c in range(len(RT_CLASSES)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        share = len(idx) / len(labels)
        k_dev, k_train = round(share * n_dev), round(share * n_train)
        dev_idx.extend(idx[:k_dev])
        train_idx.extend(idx[k_dev:k_dev + k_train])
    return train_idx, dev_idx


class Reviews(Dataset):
    def __init__(self, texts, labels):
        self.enc = tokenizer(texts, truncation=True, max_length=MAX_LEN)
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.enc["input_ids"][i],
                "attention_mask": self.enc["attention_mask"][i],
                "labels": self.labels[i]}


def collate(items):
    batch = tokenizer.pad([{k: x[k] for k in ("input_ids", "attention_mask")} for x in items],
                          return_tensors="pt")
    batch["labels"] = torch.tensor([x["labels"] for x in items], dtype=torch.long)
    return dict(batch)


class RTDataModule(L.LightningDataModule):
    def __init__(self, batch_size=16):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        rows = load_rotten_tomatoes()
        train_idx, dev_idx = stratified_split(rows.label, N_TRAIN, N_DEV)
        self.train_ds = Reviews([rows.text[i] for i in train_idx], [rows.label[i] for i in train_idx])
        self.dev_ds = Reviews([rows.text[i] for i in dev_idx], [rows.label[i] for i in dev_idx])
        counts = np.bincount(self.train_ds.labels, minlength=len(RT_CLASSES))
        self.class_weights = torch.tensor(len(self.train_ds) / (len(RT_CLASSES) * counts),
                                          dtype=torch.float)

    def train_dataloader(self):
        return DataLoader(self.train_ds, batch_size=self.batch_size, collate_fn=collate)

    def dev_dataloader(self):
        return DataLoader(self.dev_ds, batch_size=64, collate_fn=collate)


class ReviewClassifier(L.LightningModule):
    def __init__(self, class_weights, lr=5e-5, warmup_steps=20, total_steps=200, clip=1.0):
        super().__init__()
        self.save_hyperparameters(ignore=["class_weights"])
        self.automatic_optimization = False
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_path(), num_labels=len(RT_CLASSES))
        self.model.train()
        self.criterion = nn.CrossEntropyLoss(weight=class_weights)

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        sched = self.lr_schedulers()
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = self.criterion(logits, batch["labels"])
        opt.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(opt, gradient_clip_val=self.hparams.clip, gradient_clip_algorithm="norm")
        opt.step()
        sched.step()
        if batch_idx % 20 == 0:
            print(f"step {self.global_step} loss {loss.item():.4f}")

    def configure_optimizers(self):
        no_decay = ("bias", "LayerNorm.weight")
        groups = [
            {"params": [p for n, p in self.model.named_parameters() if not n.endswith(no_decay)],
             "weight_decay": 0.01},
            {"params": [p for n, p in self.model.named_parameters() if n.endswith(no_decay)],
             "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr)
        scheduler = get_linear_schedule_with_warmup(optimizer, self.hparams.warmup_steps,
                                                    self.hparams.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


dm = RTDataModule()
dm.setup()
print("class weights", [round(w, 3) for w in dm.class_weights.tolist()])
clf = ReviewClassifier(dm.class_weights, total_steps=args.max_steps,
                       warmup_steps=max(1, args.max_steps // 10))
trainer = L.Trainer(max_steps=args.max_steps, accelerator="cpu", devices=1, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False,
                    num_sanity_val_steps=0, limit_val_batches=0)
trainer.fit(clf, datamodule=dm)

clf.eval()
pred_ids, gold_ids = [], []
with torch.no_grad():
    for batch in dm.dev_dataloader():
        logits = clf(batch["input_ids"], batch["attention_mask"])
        pred_ids.append(logits.argmax(dim=-1).numpy())
        gold_ids.append(batch["labels"].numpy())
pred_ids = np.concatenate(pred_ids)
gold_ids = np.concatenate(gold_ids)

f1s = []
for c in range(len(RT_CLASSES)):
    tp = np.sum((pred_ids == c) & (gold_ids == c))
    fp = np.sum((pred_ids == c) & (gold_ids != c))
    fn = np.sum((pred_ids != c) & (gold_ids == c))
    f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0)
macro_f1 = float(np.mean(f1s))
print(f"DEV_METRIC macro_f1={macro_f1:.4f} pred_std={pred_ids.std():.4f}")
