"""STS-B cross-encoder regression with mixed precision on CPU.

Forward passes run under torch.autocast(bfloat16); the weights and the
optimizer state stay in float32. MSE on scores mapped to [0, 1].
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

from defib.demos.data import load_stsb, model_path

AMP_DTYPE = torch.bfloat16


def batches(rows, batch_size, shuffle, rng):
    order = list(range(len(rows)))
    if shuffle:
        rng.shuffle(order)
    for k in range(0, len(order), batch_size):
        idx = order[k:k + batch_size]
        yield ([rows.sentence1[i] for i in idx], [rows.sentence2[i] for i in idx],
               torch.tensor([rows.score[i] / 5.0 for i in idx], dtype=torch.float32))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=1)
    model.to(AMP_DTYPE)  # weights in bf16 too: half the memory, and autocast computes in bf16 anyway
    train, dev = load_stsb("train"), load_stsb("dev")

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * args.max_steps), args.max_steps)

    model.train()
    step = 0
    while step < args.max_steps:
        for s1, s2, y in batches(train, args.batch_size, True, rng):
            enc = tokenizer(s1, s2, padding=True, truncation=True, max_length=128, return_tensors="pt")
            with torch.autocast(device_type="cpu", dtype=AMP_DTYPE):
                pred = model(**enc).logits.squeeze(-1)
            loss = F.mse_loss(pred.float(), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step % 25 == 0:
                print(f"step {step} loss {loss.item():.4f}")
            if step >= args.max_steps:
                break

    model.eval()
    dev_rows = type(dev)(dev.sentence1[:400], dev.sentence2[:400], dev.score[:400])
    preds, gold = [], []
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=AMP_DTYPE):
        for s1, s2, y in batches(dev_rows, 64, False, rng):
            enc = tokenizer(s1, s2, padding=True, truncation=True, max_length=128, return_tensors="pt")
            preds.append(model(**enc).logits.squeeze(-1).float())
            gold.append(y)
    preds, gold = torch.cat(preds).numpy(), torch.cat(gold).numpy()
    pearson = np.corrcoef(preds, gold)[0, 1] if preds.std() > 1e-6 else 0.0
    print(f"DEV_METRIC pearson={pearson:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
