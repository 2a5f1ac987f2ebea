"""STS-B cross-encoder: MiniLM, a learned-free mix of the top layers, Huber loss.

The sentence-pair vector is the average of the last four hidden layers,
mean-pooled over the real tokens; a small regressor sits on top of it. Targets
are standardised with the training-set mean/std and un-standardised only for
reporting. Batches are length-bucketed (pairs sorted by length, chunks shuffled)
to keep padding down on CPU.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import dataclasses
import random

import numpy as np
import torch
from scipy.stats import pearsonr
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

from defib.demos.data import load_stsb, model_path


@dataclasses.dataclass
class Config:
    max_steps: int = 200
    seed: int = 0
    lr: float = 3e-5
    batch_size: int = 16
    max_length: int = 128
    top_layers: int = 4
    huber_delta: float = 1.0
    warmup_frac: float = 0.1
    dev_size: int = 400


def parse_config():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Config):
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    return Config(**vars(parser.parse_args()))


def huber(pred, target, delta):
    err = (pred - target).abs()
    quad = torch.clamp(err, max=delta)
    return (0.5 * quad ** 2 + delta * (err - quad)).mean()


def features(encoder, enc, top_layers):
    out = encoder(**enc, output_hidden_states=True)
    mixed = torch.stack(out.hidden_states[-top_layers:], dim=0).mean(dim=0)
    mask = enc["attention_mask"].unsqueeze(-1).to(mixed.dtype)
    return (mixed * mask).sum(1) / mask.sum(1)


def length_buckets(n, batch_size, rng):
    """Contiguous index chunks of the (length-sorted) training set, in random order."""
    chunks = [list(range(k, min(k + batch_size, n))) for k in range(0, n, batch_size)]
    rng.shuffle(chunks)
    return chunks


def main():
    cfg = parse_config()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    encoder = AutoModel.from_pretrained(model_path())
    regressor = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(encoder.config.hidden_size, 1))

    train = load_stsb("train")
    dev = load_stsb("dev")
    # sort once by length so that neighbouring pairs pad to about the same width
    order = sorted(range(len(train)), key=lambda i: len(train.sentence1[i]) + len(train.sentence2[i]))
    s1 = [train.sentence1[i] for i in order]
    s2 = [train.sentence2[i] for i in order]
    scores = np.asarray(train.score, dtype=np.float32)[order]
    mu, sigma = float(scores.mean()), float(scores.std())
    y = torch.tensor((scores - mu) / sigma)

    def encode(a, b):
        return tokenizer(a, b, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")

    params = list(encoder.parameters()) + list(regressor.parameters())
    optimizer = torch.optim.AdamW(params, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_frac * cfg.max_steps), cfg.max_steps)

    rng = random.Random(cfg.seed)
    step = 0
    encoder.train()
    regressor.train()
    while step < cfg.max_steps:
        for batch in length_buckets(len(s1), cfg.batch_size, rng):
            enc = encode([s1[i] for i in batch], [s2[i] for i in batch])
            pred = regressor(features(encoder, enc, cfg.top_layers)).squeeze(-1)
            loss = huber(pred, y[batch], cfg.huber_delta)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step % 25 == 0:
                print(f"[{step:>4}/{cfg.max_steps}] huber={loss.item():.4f} lr={scheduler.get_last_lr()[0]:.2e}")
            if step >= cfg.max_steps:
                break

    # dev: a fixed random subset, scores back on the 0-5 scale
    pick = np.random.default_rng(2024).choice(len(dev), size=min(cfg.dev_size, len(dev)), replace=False)
    encoder.eval()
    regressor.eval()
    preds = []
    with torch.no_grad():
        for k in range(0, len(pick), 64):
            idx = pick[k:k + 64]
            enc = encode([dev.sentence1[i] for i in idx], [dev.sentence2[i] for i in idx])
            preds.append(regressor(features(encoder, enc, cfg.top_layers)).squeeze(-1) * sigma + mu)
    preds = torch.cat(preds).numpy()
    gold = np.asarray(dev.score)[pick]
    r = pearsonr(preds, gold)[0] if preds.std() > 0 else 0.0
    print(f"DEV_METRIC pearson={r:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
