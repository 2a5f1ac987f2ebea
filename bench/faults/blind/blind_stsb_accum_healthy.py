"""STS-B regression, plain PyTorch loop.

Micro-batches of 8 with gradient accumulation over 2 (16 pairs per update),
and a warmup + linear decay schedule computed by hand each update.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from defib.demos.data import load_stsb, model_path

MICRO_BATCH = 8
ACCUM = 2
MAX_LEN = 64
SCORE_MEAN, SCORE_STD = 2.5, 1.5  # rough STS-B stats, keeps targets around 0


def lr_at(step, total, warmup, peak):
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def micro_batches(pairs, tokenizer, shuffle):
    order = list(range(len(pairs)))
    if shuffle:
        random.shuffle(order)
    for i in range(0, len(order), MICRO_BATCH):
        chunk = [pairs[j] for j in order[i:i + MICRO_BATCH]]
        enc = tokenizer([c[0] for c in chunk], [c[1] for c in chunk], padding=True,
                        truncation=True, max_length=MAX_LEN, return_tensors="pt")
        target = torch.tensor([(c[2] - SCORE_MEAN) / SCORE_STD for c in chunk])
        yield enc, target


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--warmup", type=float, default=0.1)
    opts = ap.parse_args()

    random.seed(opts.seed)
    np.random.seed(opts.seed)
    torch.manual_seed(opts.seed)

    train = load_stsb("train")
    dev = load_stsb("dev")
    train_pairs = list(zip(train.sentence1, train.sentence2, train.score))
    dev_pairs = list(zip(dev.sentence1, dev.sentence2, dev.score))
    random.Random(99).shuffle(dev_pairs)
    dev_pairs = dev_pairs[:300]

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=0.01)
    warmup_steps = max(1, int(opts.warmup * opts.max_steps))

    model.train()
    optimizer.zero_grad()
    step, micro, running = 0, 0, 0.0
    while step < opts.max_steps:
        for enc, target in micro_batches(train_pairs, tokenizer, shuffle=True):
            pred = model(**enc).logits.squeeze(-1)
            loss = F.mse_loss(pred, target) / ACCUM
            loss.backward()
            running += loss.item()
            micro += 1
            if micro % ACCUM != 0:
                continue

            lr = lr_at(step, opts.max_steps, warmup_steps, opts.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if step % 20 == 0:
                print(f"update {step}  lr {lr:.2e}  loss {running / 20:.4f}")
                running = 0.0
            if step >= opts.max_steps:
                break

    model.eval()
    preds, gold = [], []
    with torch.no_grad():
        for enc, target in micro_batches(dev_pairs, tokenizer, shuffle=False):
            preds += model(**enc).logits.squeeze(-1).tolist()
            gold += target.tolist()
    preds, gold = np.array(preds), np.array(gold)
    pearson = np.corrcoef(preds, gold)[0, 1]
    print(f"DEV_METRIC pearson={pearson:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
