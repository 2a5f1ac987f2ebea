"""Three-way review classifier: frozen-shape tensors, own classification head.

All reviews are tokenized once into fixed tensors (TensorDataset), the
encoder is a bare AutoModel and the head is ours: [CLS] -> dense -> tanh -> out.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import load_rotten_tomatoes, model_path


class Classifier(nn.Module):
    def __init__(self, n_classes=3):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(model_path())
        d = self.encoder.config.hidden_size
        self.dense = nn.Linear(d, d)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(d, n_classes)

    def forward(self, ids, mask):
        h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        return self.out(self.drop(torch.tanh(self.dense(h))))


def macro_f1(gold, pred, k=3):
    scores = []
    for c in range(k):
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--bs", type=int, default=32)
    a = ap.parse_args()
    torch.manual_seed(1)

    rt = load_rotten_tomatoes()
    tok = AutoTokenizer.from_pretrained(model_path())
    enc = tok(rt.text, padding="longest", truncation=True, max_length=64, return_tensors="pt")
    labels = torch.tensor(rt.label)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(77))
    dev_i, train_i = perm[:400], perm[400:]
    train_ds = TensorDataset(enc["input_ids"][train_i], enc["attention_mask"][train_i], labels[train_i])
    dev_ds = TensorDataset(enc["input_ids"][dev_i], enc["attention_mask"][dev_i], labels[dev_i])

    model = Classifier()
    criterion = nn.NLLLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)

    step = 0
    model.train()
    while step < a.max_steps:
        for ids, mask, y in DataLoader(train_ds, batch_size=a.bs, shuffle=True):
            # trim the shared padding of this batch
            width = int(mask.sum(1).max())
            logits = model(ids[:, :width], mask[:, :width])
            loss = criterion(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 25 == 0:
                print(f"step {step} loss {loss.item():.4f}")
            if step >= a.max_steps:
                break

    model.eval()
    preds, gold = [], []
    with torch.no_grad():
        for ids, mask, y in DataLoader(dev_ds, batch_size=100):
            width = int(mask.sum(1).max())
            preds.append(model(ids[:, :width], mask[:, :width]).argmax(-1))
            gold.append(y)
    preds, gold = torch.cat(preds).numpy(), torch.cat(gold).numpy()
    print(f"DEV_METRIC macro_f1={macro_f1(gold, preds):.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
