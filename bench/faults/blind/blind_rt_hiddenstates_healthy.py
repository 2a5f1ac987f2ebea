"""Rotten Tomatoes with MiniLM features and a classifier head kept outside the encoder.

The encoder is asked for all hidden states (we experimented with layer mixes);
the head reads the [CLS] vector of the chosen layer. Batches are bucketed by
length so there is little padding.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import load_rotten_tomatoes, model_path

BS = 32


def get_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--head-lr", type=float, default=5e-4)
    return ap.parse_args()


def features(encoder, enc):
    out = encoder(**enc, output_hidden_states=True)
    layer = out.hidden_states[-1]
    return layer[:, 0]


def main():
    args = get_args()
    random.seed(3)
    torch.manual_seed(3)

    data = load_rotten_tomatoes()
    idx = list(range(len(data)))
    random.Random(2).shuffle(idx)
    dev_idx, train_idx = idx[:400], idx[400:]
    train_texts = [data.text[i] for i in train_idx]
    train_labels = [data.label[i] for i in train_idx]

    # bucket by length: sort once, cut into batches, shuffle the batches each epoch
    order = sorted(range(len(train_texts)), key=lambda i: len(train_texts[i]))
    train_texts = [train_texts[i] for i in order]
    train_labels = [train_labels[i] for i in order]
    buckets = [list(range(s, min(s + BS, len(train_texts)))) for s in range(0, len(train_texts), BS)]

    tok = AutoTokenizer.from_pretrained(model_path())
    encoder = AutoModel.from_pretrained(model_path())
    head = nn.Sequential(nn.Dropout(0.1), nn.Linear(encoder.config.hidden_size, 3))
    opt = torch.optim.AdamW([
        {"params": encoder.parameters(), "lr": args.lr},
        {"params": head.parameters(), "lr": args.head_lr},
    ], weight_decay=0.01)

    encoder.train()
    head.train()
    step = 0
    while step < args.max_steps:
        random.shuffle(buckets)
        for b in buckets:
            enc = tok([train_texts[i] for i in b], padding=True, truncation=True, max_length=128,
                      return_tensors="pt")
            y = torch.tensor([train_labels[i] for i in b])
            loss = F.cross_entropy(head(features(encoder, enc)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 20 == 0:
                print(f"step {step} loss {loss.item():.4f}")
            if step >= args.max_steps:
                break

    encoder.eval()
    head.eval()
    preds = []
    with torch.no_grad():
        for s in range(0, len(dev_idx), 100):
            chunk = dev_idx[s:s + 100]
            enc = tok([data.text[i] for i in chunk], padding=True, truncation=True, max_length=128,
                      return_tensors="pt")
            preds.extend(head(features(encoder, enc)).argmax(-1).tolist())
    preds = np.array(preds)
    gold = [data.label[i] for i in dev_idx]
    print(f"DEV_METRIC macro_f1={f1_score(gold, preds, average='macro'):.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
