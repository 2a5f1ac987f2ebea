"""Bi-encoder fine-tuning on STS-B, sentence-transformers style but by hand.

Both sentences go through the same MiniLM separately, are mean pooled, and
the cosine of the two embeddings is regressed onto the gold similarity
(CosineSimilarityLoss: MSE between cosine and the label).
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import load_stsb, model_path


def mean_pool(model, enc):
    tokens = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).type_as(tokens)
    return (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def embed(model, tok, sentences):
    enc = tok(sentences, padding=True, truncation=True, max_length=64, return_tensors="pt")
    return mean_pool(model, enc)


def load_examples(split):
    rows = load_stsb(split)
    # (sentence 1, sentence 2, gold similarity)
    return [(a, b, s) for a, b, s in zip(rows.sentence1, rows.sentence2, rows.score)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    args = ap.parse_args()
    random.seed(0)
    torch.manual_seed(0)

    tok = AutoTokenizer.from_pretrained(model_path())
    model = AutoModel.from_pretrained(model_path())
    train = load_examples("train")
    dev = load_examples("dev")
    random.Random(5).shuffle(dev)
    dev = dev[:400]

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    total = args.max_steps
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / total))

    model.train()
    step = 0
    while step < total:
        random.shuffle(train)
        for k in range(0, len(train) - args.batch_size + 1, args.batch_size):
            batch = train[k:k + args.batch_size]
            a, b, gold = zip(*batch)
            u, v = embed(model, tok, list(a)), embed(model, tok, list(b))
            cos = F.cosine_similarity(u, v)
            loss = F.mse_loss(cos, torch.tensor(gold, dtype=torch.float32))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sched.step()
            step += 1
            if step % 20 == 0:
                print(f"step {step}/{total} cos-mse {loss.item():.4f}")
            if step >= total:
                break

    model.eval()
    preds = []
    with torch.no_grad():
        for k in range(0, len(dev), 100):
            a, b, _ = zip(*dev[k:k + 100])
            preds.append(F.cosine_similarity(embed(model, tok, list(a)), embed(model, tok, list(b))))
    preds = torch.cat(preds).numpy()
    gold = np.array([g for _, _, g in dev])
    print(f"DEV_METRIC pearson={np.corrcoef(preds, gold)[0, 1]:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
