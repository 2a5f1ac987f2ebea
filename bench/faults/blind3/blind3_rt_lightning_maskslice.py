"""Rotten Tomatoes review classifier as a Lightning module.

LightningDataModule tokenizes once up front; the collate function only pads.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path


class ReviewData(L.LightningDataModule):
    def __init__(self, batch_size=32, max_length=128, n_val=300):
        super().__init__()
        self.batch_size, self.max_length, self.n_val = batch_size, max_length, n_val
        self.tokenizer = AutoTokenizer.from_pretrained(model_path())

    def setup(self, stage=None):
        rows = load_rotten_tomatoes()
        perm = np.random.RandomState(11).permutation(len(rows))
        enc = self.tokenizer(rows.text, truncation=True, max_length=self.max_length)
        examples = [(enc["input_ids"][i], rows.label[i]) for i in range(len(rows))]
        self.val = [examples[i] for i in perm[:self.n_val]]
        self.train = [examples[i] for i in perm[self.n_val:]]

    def collate(self, batch):
        ids, labels = zip(*batch)
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, :len(x)] = torch.tensor(x)
            mask[row, len(x):] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "labels": torch.tensor(labels)}

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True, collate_fn=self.collate)

    def predict_dataloader(self):
        return DataLoader(self.val, batch_size=64, collate_fn=self.collate)


class ReviewClassifier(L.LightningModule):
    def __init__(self, lr=3e-5, weight_decay=0.01):
        super().__init__()
        self.save_hyperparameters()
        self.model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=len(RT_CLASSES))

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def training_step(self, batch, batch_idx):
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = F.cross_entropy(logits, batch["labels"])
        self.log("train_loss", loss, prog_bar=True)
        if self.global_step % 20 == 0:
            print(f"step {self.global_step} loss {loss.item():.4f}")
        return loss

    def predict_step(self, batch, batch_idx):
        return self(batch["input_ids"], batch["attention_mask"]).argmax(-1), batch["labels"]

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=3e-5)
    args = ap.parse_args()
    L.seed_everything(5)

    data = ReviewData()
    module = ReviewClassifier(lr=args.lr)
    trainer = L.Trainer(max_steps=args.max_steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)

    out = trainer.predict(module, datamodule=data)
    preds = torch.cat([p for p, _ in out]).numpy()
    gold = torch.cat([y for _, y in out]).numpy()
    f1 = f1_score(gold, preds, average="macro")
    print(f"DEV_METRIC macro_f1={f1:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
