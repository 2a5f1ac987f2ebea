# Which entity types does a tweet mention?  Multi-label tagging of WNUT-16 tweets
# (10 types, a tweet can have several or none).  MiniLM encoder, mean pooling,
# linear head, BCEWithLogitsLoss with pos_weight = neg/pos per type (the types
# are rare).  Dev: micro F1 at threshold 0.5.
import os
os.environ["HF_HUB_OFFLINE"] = "1"
import argparse
import random

import numpy as np
import torch
import torch.nn as nn
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import model_path, wnut16_conll

TYPES = ["company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product", "sportsteam", "tvshow"]


class TweetTagger(nn.Module):
    def __init__(self, path, n_out):
        super().__init__()
        self.enc = AutoModel.from_pretrained(path)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(self.enc.config.hidden_size, n_out)

    def forward(self, input_ids, attention_mask):
        h = self.enc(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.out(self.drop(pooled))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=400)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args()
    torch.manual_seed(0)
    random.seed(0)

    # --- data: one tweet per block, multi-hot over entity types
    tweets, cur = [], []
    for line in open(wnut16_conll(), encoding="utf-8"):
        line = line.strip()
        if not line:
            if cur:
                tweets.append(cur)
            cur = []
            continue
        tok, tag = line.split("\t")
        cur.append((tok, tag))
    if cur:
        tweets.append(cur)
    texts = [" ".join(t for t, _ in tw) for tw in tweets]
    Y = np.zeros((len(tweets), len(TYPES)), dtype=np.float32)
    for i, tw in enumerate(tweets):
        for _, tag in tw:
            if tag.startswith("B-"):
                Y[i, TYPES.index(tag[2:])] = 1.0
    idx = list(range(len(texts)))
    random.shuffle(idx)
    dev_idx, tr_idx = idx[:400], idx[400:]
    print("train", len(tr_idx), "dev", len(dev_idx), "label rate", Y[tr_idx].mean(0).round(3))

    tok = AutoTokenizer.from_pretrained(model_path())
    model = TweetTagger(model_path(), len(TYPES))

    ytr = torch.tensor(Y[tr_idx])
    pos = ytr.sum(0)
    neg = len(tr_idx) - pos
    pos_weight = neg / pos.clamp(min=1.0)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / args.max_steps))

    step = 0
    model.train()
    while step < args.max_steps:
        random.shuffle(tr_idx)
        for b in range(0, len(tr_idx) - args.bs + 1, args.bs):
            ids = tr_idx[b:b + args.bs]
            enc = tok([texts[i] for i in ids], padding=True, truncation=True, max_length=64, return_tensors="pt")
            logits = model(enc["input_ids"], enc["attention_mask"])
            loss = loss_fn(logits, torch.tensor(Y[ids]))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % 20 == 0:
                print(f"step {step} loss {loss.item():.4f}")
            if step >= args.max_steps:
                break

    # --- dev
    model.eval()
    probs = []
    with torch.no_grad():
        for b in range(0, len(dev_idx), 64):
            ids = dev_idx[b:b + 64]
            enc = tok([texts[i] for i in ids], padding=True, truncation=True, max_length=64, return_tensors="pt")
            probs.append(torch.sigmoid(model(enc["input_ids"], enc["attention_mask"])))
    P = torch.cat(probs).numpy()
    pred = (P > 0.5).astype(np.float32)
    gold = Y[dev_idx]
    tp = (pred * gold).sum()
    fp = (pred * (1 - gold)).sum()
    fn = ((1 - pred) * gold).sum()
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0
    print(f"DEV_METRIC micro_f1={f1:.4f} pred_std={P.std():.4f}")


if __name__ == "__main__":
    main()
