"""STS-B similarity regression with a MiniLM cross-encoder.

Kept as a handful of small functions; the loss is plain tensor maths so it is
easy to swap for something else later (huber, weighted, ...).
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import load_stsb, model_path

MAX_LEN = 128
BATCH = 16
N_DEV = 300


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class PairScorer(nn.Module):
    """MiniLM over "[CLS] s1 [SEP] s2 [SEP]", mean pooled, one linear output."""

    def __init__(self, path):
        super().__init__()
        self.bert = AutoModel.from_pretrained(path)
        self.out = nn.Linear(self.bert.config.hidden_size, 1)

    def forward(self, enc):
        hidden = self.bert(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.out(pooled).squeeze(-1)


def make_batches(rows, order, tok):
    for start in range(0, len(order), BATCH):
        idx = order[start:start + BATCH]
        enc = tok([rows.sentence1[i] for i in idx], [rows.sentence2[i] for i in idx],
                  padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
        # scores are 0..5, bring them to 0..1
        y = torch.tensor([rows.score[i] / 5.0 for i in idx], dtype=torch.float32)
        yield enc, y


def squared_error(pred, target):
    return ((pred - target) ** 2).mean()


def train(model, tok, rows, max_steps, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    step = 0
    while step < max_steps:
        order = np.random.permutation(len(rows))
        for enc, y in make_batches(rows, order, tok):
            pred = model(enc)
            loss = squared_error(pred, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 25 == 0:
                print(f"step {step}: loss {loss.item():.4f}")
            if step >= max_steps:
                return


@torch.no_grad()
def evaluate(model, tok, rows, idx):
    model.eval()
    preds, gold = [], []
    for enc, y in make_batches(rows, idx, tok):
        preds.extend(model(enc).flatten().tolist())
        gold.extend(y.tolist())
    preds, gold = np.array(preds), np.array(gold)
    return float(np.corrcoef(preds, gold)[0, 1]), float(preds.std())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=4e-5)
    args = parser.parse_args()
    set_seed(args.seed)

    tok = AutoTokenizer.from_pretrained(model_path())
    model = PairScorer(model_path())
    train_rows = load_stsb("train")
    dev_rows = load_stsb("dev")
    # fixed dev slice, independent of the training seed
    dev_idx = np.random.RandomState(1234).permutation(len(dev_rows))[:N_DEV]

    train(model, tok, train_rows, args.max_steps, args.lr)
    pearson, pred_std = evaluate(model, tok, dev_rows, dev_idx)
    print(f"DEV_METRIC pearson={pearson:.4f} pred_std={pred_std:.4f}")


if __name__ == "__main__":
    main()
