"""STS-B similarity (0-5) with PyTorch Lightning.

Penultimate-layer mean pooling (hidden_states[-2] tends to transfer better than
the last layer for small encoders), a bounded output 5 * sigmoid(.) so the
prediction is always a valid score, MSE on the raw 0-5 scores. The two bottom
transformer layers are frozen to save a bit of time on CPU. AdamW with the usual
no-decay split and a linear warmup/decay schedule stepped every batch.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

from defib.demos.data import load_stsb, model_path

NO_DECAY = ("bias", "LayerNorm.weight")


def make_collate(tokenizer, max_length=128):
    def collate(batch):
        a, b, y = zip(*batch)
        enc = tokenizer(list(a), list(b), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        enc["score"] = torch.tensor(y, dtype=torch.float32)
        return dict(enc)
    return collate


class StsRegressor(L.LightningModule):
    def __init__(self, lr=3e-5, warmup_steps=20, total_steps=300, weight_decay=0.01, frozen_layers=2):
        super().__init__()
        self.save_hyperparameters()
        self.encoder = AutoModel.from_pretrained(model_path())
        self.encoder.embeddings.requires_grad_(False)
        for layer in self.encoder.encoder.layer[:frozen_layers]:
            layer.requires_grad_(False)
        self.out = torch.nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, token_type_ids):
        hs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                          output_hidden_states=True).hidden_states
        h = hs[-2]
        m = attention_mask.unsqueeze(-1).type_as(h)
        pooled = (h * m).sum(1) / m.sum(1)
        return 5.0 * torch.sigmoid(self.out(pooled).squeeze(-1))

    def training_step(self, batch, batch_idx):
        score = batch.pop("score")
        loss = F.mse_loss(self(**batch), score)
        if self.global_step % 25 == 0:
            print(f"step {self.global_step:4d}  mse {loss.item():.4f}")
        return loss

    def predict_step(self, batch, batch_idx):
        score = batch.pop("score")
        return self(**batch), score

    def configure_optimizers(self):
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": self.hparams.weight_decay},
            {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr)
        scheduler = get_linear_schedule_with_warmup(optimizer, self.hparams.warmup_steps, self.hparams.total_steps)
        return [optimizer], [scheduler]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    L.seed_everything(args.seed)

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    train, dev = load_stsb("train"), load_stsb("dev")
    train_set = list(zip(train.sentence1, train.sentence2, train.score))
    keep = np.random.RandomState(5).permutation(len(dev))[:400]
    dev_set = [(dev.sentence1[i], dev.sentence2[i], dev.score[i]) for i in keep]
    collate = make_collate(tokenizer)
    train_dl = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, collate_fn=collate)
    dev_dl = DataLoader(dev_set, batch_size=64, collate_fn=collate)

    model = StsRegressor(warmup_steps=max(1, args.max_steps // 10), total_steps=args.max_steps)
    trainer = L.Trainer(max_steps=args.max_steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        gradient_clip_val=1.0)
    trainer.fit(model, train_dataloaders=train_dl)

    out = trainer.predict(model, dataloaders=dev_dl)
    preds = torch.cat([p for p, _ in out]).numpy()
    gold = torch.cat([y for _, y in out]).numpy()
    pearson = float(np.corrcoef(preds, gold)[0, 1]) if preds.std() > 0 else 0.0
    print(f"DEV_METRIC pearson={pearson:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
