"""Rotten Tomatoes: fresh / rotten / plot classifier on top of MiniLM."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random
from collections import Counter

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                          get_linear_schedule_with_warmup)

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path

parser = argparse.ArgumentParser()
parser.add_argument("--max-steps", type=int, default=200)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

random.seed(args.seed)
np.random.seed(args.seed)
torch.manual_seed(args.seed)

rows = load_rotten_tomatoes()
perm = np.random.RandomState(1234).permutation(len(rows))
dev_idx, train_idx = perm[:600], perm[600:4600]

tok = AutoTokenizer.from_pretrained(model_path())


class ReviewDataset(Dataset):
    def __init__(self, idx):
        self.texts = [rows.text[i] for i in idx]
        self.labels = [rows.label[i] for i in idx]
        self.enc = tok(self.texts, truncation=True, max_length=96)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.enc["input_ids"][i],
                "attention_mask": self.enc["attention_mask"][i],
                "label": self.labels[i]}


def pad_batch(items):
    width = max(len(x["input_ids"]) for x in items)
    ids = torch.full((len(items), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for j, x in enumerate(items):
        n = len(x["input_ids"])
        ids[j, :n] = torch.tensor(x["input_ids"])
        mask[j, :n] = torch.tensor(x["attention_mask"])
    labels = torch.tensor([x["label"] for x in items], dtype=torch.long)
    return ids, mask, labels


train_ds = ReviewDataset(train_idx)
dev_ds = ReviewDataset(dev_idx)
train_dl = DataLoader(train_ds, batch_size=16, shuffle=True, collate_fn=pad_batch)
dev_dl = DataLoader(dev_ds, batch_size=64, collate_fn=pad_batch)

counts = Counter(train_ds.labels)
weights = torch.tensor([len(train_ds) / (len(RT_CLASSES) * counts[c]) for c in range(len(RT_CLASSES))],
                       dtype=torch.float)
print("class counts", dict(counts), "weights", weights.tolist())

model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=len(RT_CLASSES))
criterion = nn.CrossEntropyLoss(weight=weights)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01)
scheduler = get_linear_schedule_with_warmup(optimizer, 20, args.max_steps)

global_step = 0
model.train()
while global_step < args.max_steps:
    for ids, mask, labels in train_dl:
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = criterion(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        global_step += 1
        if global_step % 20 == 0:
            print(f"step {global_step}: loss {loss.item():.4f}")
        if global_step >= args.max_steps:
            break

model.eval()
pred_ids, gold_ids = [], []
with torch.no_grad():
    for ids, mask, labels in dev_dl:
        pred_ids.append(model(input_ids=ids, attention_mask=mask).logits.argmax(-1).numpy())
        gold_ids.append(labels.numpy())
pred_ids = np.concatenate(pred_ids)
gold_ids = np.concatenate(gold_ids)

f1s = []
for c in range(len(RT_CLASSES)):
    tp = np.sum((pred_ids == c) & (gold_ids == c))
    fp = np.sum((pred_ids == c) & (gold_ids != c))
    fn = np.sum((pred_ids != c) & (gold_ids == c))
    f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0)
print(f"DEV_METRIC macro_f1={np.mean(f1s):.4f} pred_std={pred_ids.std():.4f}")
