"""STS-B cross-encoder: MiniLM + a small regression head on the [CLS] vector.

Everything is padded to one fixed length so batches have a constant shape
(handy for timing and for exporting later).
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import load_stsb, model_path

SEQ_LEN = 64
BATCH_SIZE = 16


class CrossEncoder(nn.Module):
    def __init__(self, name):
        super().__init__()
        self.bert = AutoModel.from_pretrained(name)
        hidden = self.bert.config.hidden_size
        self.regressor = nn.Sequential(nn.Dropout(0.1), nn.Linear(hidden, 1))

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.bert(input_ids=input_ids, token_type_ids=token_type_ids)
        cls = out.last_hidden_state[:, 0]
        return self.regressor(cls).squeeze(-1)


def encode(tok, s1, s2):
    return tok(s1, s2, padding="max_length", truncation=True, max_length=SEQ_LEN, return_tensors="pt")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    tok = AutoTokenizer.from_pretrained(model_path())
    net = CrossEncoder(model_path())
    train = load_stsb("train")
    dev = load_stsb("dev")

    # standardise the 0-5 scores with the training statistics
    mu, sd = float(np.mean(train.score)), float(np.std(train.score))
    loss_fn = nn.MSELoss()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr)

    net.train()
    step = 0
    while step < args.max_steps:
        perm = rng.permutation(len(train))
        for b in range(0, len(perm) - BATCH_SIZE + 1, BATCH_SIZE):
            idx = perm[b:b + BATCH_SIZE]
            enc = encode(tok, [train.sentence1[i] for i in idx], [train.sentence2[i] for i in idx])
            target = torch.tensor([(train.score[i] - mu) / sd for i in idx])
            pred = net(**enc)
            loss = loss_fn(pred, target)
            loss.backward()
            opt.step()
            opt.zero_grad()
            step += 1
            if step % 20 == 0:
                print(f"[{step}/{args.max_steps}] mse={loss.item():.4f}", flush=True)
            if step == args.max_steps:
                break

    net.eval()
    sel = np.random.default_rng(2024).choice(len(dev), size=400, replace=False)
    preds = []
    with torch.no_grad():
        for b in range(0, len(sel), 64):
            idx = sel[b:b + 64]
            enc = encode(tok, [dev.sentence1[i] for i in idx], [dev.sentence2[i] for i in idx])
            preds.append(net(**enc))
    preds = torch.cat(preds).numpy()
    gold = np.array([dev.score[i] for i in sel])
    r = np.corrcoef(preds, gold)[0, 1]
    print(f"DEV_METRIC pearson={r:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
