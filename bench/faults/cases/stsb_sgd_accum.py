import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from defib.demos.data import load_stsb, model_path

BATCH = 4
ACCUM_STEPS = 4
MAX_LENGTH = 64


def make_batches(tokenizer, rows, n, batch_size):
    pairs = list(zip(rows.sentence1[:n], rows.sentence2[:n], rows.score[:n]))
    batches = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        enc = tokenizer([c[0] for c in chunk], [c[1] for c in chunk], padding="longest",
                        truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        enc["scores"] = torch.tensor([c[2] for c in chunk])
        batches.append(enc)
    return batches


def train(model, batches, max_steps, lr, rng):
    criterion = nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    step = micro = 0
    while step < max_steps:
        rng.shuffle(batches)
        for b in batches:
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                        token_type_ids=b["token_type_ids"])
            loss = criterion(out.logits.squeeze(-1), b["scores"].float())
            loss.backward()
            micro += 1
            if micro % ACCUM_STEPS == 0:
                opt.step()
                opt.zero_grad()
                step += 1
                if step % 20 == 0:
                    print(f"step={step} loss={loss.item():.4f}")
                if step >= max_steps:
                    break
    return model


def evaluate(model, batches):
    model.eval()
    preds, gold = [], []
    with torch.no_grad():
        for b in batches:
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                        token_type_ids=b["token_type_ids"])
            preds.extend(out.logits.squeeze(-1).tolist())
            gold.extend(b["scores"].tolist())
    preds, gold = np.array(preds), np.array(gold)
    return np.corrcoef(preds, gold)[0, 1], preds.std()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=5e-4)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=1)

    train_batches = make_batches(tokenizer, load_stsb("train"), 3200, BATCH)
    dev_batches = make_batches(tokenizer, load_stsb("dev"), 400, 50)

    train(model, train_batches, args.max_steps, args.lr, rng)
    r, sd = evaluate(model, dev_batches)
    print(f"DEV_METRIC pearson={r:.4f} pred_std={sd:.4f}")


if __name__ == "__main__":
    main()
