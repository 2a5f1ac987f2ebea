"""Rotten Tomatoes 3-way (fresh / rotten / plot) with MiniLM + a separate linear head.

The encoder and the classifier are two objects; pooling happens in the loop so
I can try CLS vs mean pooling without touching the model code.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import f1_score
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path

parser = argparse.ArgumentParser()
parser.add_argument("--max-steps", type=int, default=200)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--encoder-lr", type=float, default=2e-5)
parser.add_argument("--head-lr", type=float, default=1e-3)
parser.add_argument("--batch-size", type=int, default=16)
args = parser.parse_args()

random.seed(args.seed)
np.random.seed(args.seed)
torch.manual_seed(args.seed)

MAX_LEN = 64

# --- data: hold out 300 reviews, the rest is training data
rows = load_rotten_tomatoes()
perm = np.random.RandomState(42).permutation(len(rows))
dev_ids, train_ids = perm[:300], perm[300:]
train_texts = [rows.text[i] for i in train_ids]
train_labels = [rows.label[i] for i in train_ids]
dev_texts = [rows.text[i] for i in dev_ids]
dev_labels = [rows.label[i] for i in dev_ids]
print(f"train {len(train_texts)}  dev {len(dev_texts)}  classes {RT_CLASSES}")

tokenizer = AutoTokenizer.from_pretrained(model_path())
encoder = AutoModel.from_pretrained(model_path())
head = nn.Sequential(nn.Dropout(0.1), nn.Linear(encoder.config.hidden_size, len(RT_CLASSES)))


def encode(texts):
    return tokenizer(texts, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")


def mean_pool(hidden, mask):
    mask = mask.unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)


def embed(enc):
    hidden = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    return mean_pool(hidden, enc["attention_mask"])


# the head is freshly initialised so it gets a much bigger lr than the encoder
optimizer = torch.optim.AdamW(
    [
        {"params": encoder.parameters(), "lr": args.encoder_lr},
        {"params": head.parameters(), "lr": args.head_lr},
    ],
    weight_decay=0.01,
)

encoder.train()
head.train()
step = 0
while step < args.max_steps:
    order = np.random.permutation(len(train_texts))
    for start in range(0, len(order) - args.batch_size + 1, args.batch_size):
        idx = order[start:start + args.batch_size]
        enc = encode([train_texts[i] for i in idx])
        labels = torch.tensor([train_labels[i] for i in idx])

        logits = head(embed(enc))
        loss = F.cross_entropy(logits, labels)

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 20 == 0:
            acc = (logits.argmax(-1) == labels).float().mean().item()
            print(f"step {step:4d}  loss {loss.item():.4f}  batch acc {acc:.2f}")
        if step >= args.max_steps:
            break

# --- evaluation on the held-out reviews
encoder.eval()
head.eval()
pred_ids = []
with torch.no_grad():
    for start in range(0, len(dev_texts), 64):
        enc = encode(dev_texts[start:start + 64])
        pred_ids.extend(head(embed(enc)).argmax(dim=-1).tolist())
pred_ids = np.array(pred_ids)
macro_f1 = f1_score(dev_labels, pred_ids, average="macro")
print(f"DEV_METRIC macro_f1={macro_f1:.4f} pred_std={pred_ids.std():.4f}")
