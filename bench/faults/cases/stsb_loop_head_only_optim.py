"""Fine-tune MiniLM as a cross-encoder on STS-B (similarity regression)."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

from defib.demos.data import load_stsb, model_path

parser = argparse.ArgumentParser()
parser.add_argument("--max-steps", type=int, default=200)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--lr", type=float, default=3e-5)
parser.add_argument("--batch-size", type=int, default=16)
args = parser.parse_args()

random.seed(args.seed)
np.random.seed(args.seed)
torch.manual_seed(args.seed)

MAX_LEN = 64
tokenizer = AutoTokenizer.from_pretrained(model_path())


class STSBDataset(Dataset):
    def __init__(self, rows, limit=None):
        n = len(rows) if limit is None else min(limit, len(rows))
        self.s1 = rows.sentence1[:n]
        self.s2 = rows.sentence2[:n]
        self.scores = rows.score[:n]

    def __len__(self):
        return len(self.scores)

    def __getitem__(self, idx):
        return self.s1[idx], self.s2[idx], self.scores[idx]


def collate(batch):
    s1, s2, scores = zip(*batch)
    enc = tokenizer(list(s1), list(s2), padding=True, truncation=True,
                    max_length=MAX_LEN, return_tensors="pt")
    enc["labels"] = torch.tensor(scores, dtype=torch.float)
    return enc


class CrossEncoderRegressor(nn.Module):
    def __init__(self, name):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(name)
        hidden = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(hidden, 1)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids)
        cls = out.last_hidden_state[:, 0]
        return self.head(self.dropout(cls)).squeeze(-1)


train_set = STSBDataset(load_stsb("train"), limit=3200)
dev_set = STSBDataset(load_stsb("dev"), limit=400)
train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                          collate_fn=collate, generator=torch.Generator().manual_seed(args.seed))
dev_loader = DataLoader(dev_set, batch_size=64, shuffle=False, collate_fn=collate)

model = CrossEncoderRegressor(model_path())
optimizer = torch.optim.AdamW(model.head.parameters(), lr=args.lr, weight_decay=0.01)
scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=int(0.1 * args.max_steps),
                                            num_training_steps=args.max_steps)

step = 0
model.train()
while step < args.max_steps:
    for batch in train_loader:
        labels = batch.pop("labels")
        preds = model(**batch)
        loss = F.mse_loss(preds, labels)

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        if step % 20 == 0:
            print(f"step {step} loss {loss.item():.4f}")
        if step >= args.max_steps:
            break

model.eval()
all_preds, all_labels = [], []
with torch.no_grad():
    for batch in dev_loader:
        labels = batch.pop("labels")
        all_preds.append(model(**batch).view(-1).numpy())
        all_labels.append(labels.numpy())
preds = np.concatenate(all_preds)
gold = np.concatenate(all_labels)
pearson = float(np.corrcoef(preds, gold)[0, 1])
print(f"DEV_METRIC pearson={pearson:.4f} pred_std={preds.std():.4f}")
