"""Fine-tune all-MiniLM-L6-v2 on STS-B with a bug that flattens the predictions.

The planted fault is one people really hit: the regression head returns shape
(B, 1), the targets have shape (B,), and ``F.mse_loss`` broadcasts the two to
(B, B). The loss is then minimised by predicting the mean score for every pair,
so the predictions collapse to a constant. PyTorch only warns about it.

    defib run --max-steps 60 -- python examples/stsb_flatline.py

The fix is one line: ``loss = F.mse_loss(preds.squeeze(-1), labels)``.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # the model is packaged; never call the hub

import argparse
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import load_stsb, model_path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--max-steps", type=int, default=80)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

random.seed(args.seed)
np.random.seed(args.seed)
torch.manual_seed(args.seed)

BATCH_SIZE = 16
MAX_LEN = 64
DEV_ROWS = 300
tokenizer = AutoTokenizer.from_pretrained(model_path())


class PairDataset(Dataset):
    def __init__(self, rows, limit=None):
        n = len(rows) if limit is None else min(limit, len(rows))
        self.s1, self.s2, self.scores = rows.sentence1[:n], rows.sentence2[:n], rows.score[:n]

    def __len__(self):
        return len(self.scores)

    def __getitem__(self, i):
        return self.s1[i], self.s2[i], self.scores[i]


def collate(batch):
    s1, s2, scores = zip(*batch)
    enc = tokenizer(list(s1), list(s2), padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
    return enc, torch.tensor(scores, dtype=torch.float)  # labels: (B,)


class Regressor(nn.Module):
    def __init__(self, path):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(path)
        self.head = nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state  # (B, T, H)
        return self.head(hidden[:, 0])  # CLS pooling -> (B, 1)


train_loader = DataLoader(PairDataset(load_stsb("train")), batch_size=BATCH_SIZE, shuffle=True,
                          collate_fn=collate, generator=torch.Generator().manual_seed(args.seed))
dev_loader = DataLoader(PairDataset(load_stsb("dev"), limit=DEV_ROWS), batch_size=64, collate_fn=collate)

model = Regressor(model_path())
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5)

step = 0
model.train()
while step < args.max_steps:
    for enc, labels in train_loader:
        preds = model(**enc)               # (B, 1)
        loss = F.mse_loss(preds, labels)   # BUG: (B, 1) vs (B,) broadcasts to (B, B)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 10 == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
        if step >= args.max_steps:
            break

model.eval()
all_preds, all_gold = [], []
with torch.no_grad():
    for enc, labels in dev_loader:
        all_preds.append(model(**enc).squeeze(-1).numpy())
        all_gold.append(labels.numpy())
preds, gold = np.concatenate(all_preds), np.concatenate(all_gold)
pearson = float(np.corrcoef(preds, gold)[0, 1]) if preds.std() > 0 else float("nan")
print(f"dev ({len(gold)} rows): pearson {pearson:.4f}  pred_std {preds.std():.4f}  gold_std {gold.std():.4f}")
