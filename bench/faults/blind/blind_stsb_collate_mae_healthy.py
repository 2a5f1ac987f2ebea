"""STS-B regression, L1 objective.

Data is tokenized up front into plain dicts (no padding); a collate_fn pads
each batch and stacks the targets. MAE is less sensitive than MSE to the noisy
middle of the 0-5 scale, so we use it directly.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import load_stsb, model_path


def pretokenize(tokenizer, rows, limit=None):
    n = len(rows) if limit is None else min(limit, len(rows))
    enc = tokenizer(rows.sentence1[:n], rows.sentence2[:n], truncation=True, max_length=100)
    return [
        {"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i], "score": rows.score[i]}
        for i in range(n)
    ]


def collate_fn(examples, pad_id=0):
    longest = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), longest), pad_id)
    types = torch.zeros((len(examples), longest), dtype=torch.long)
    mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for r, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[r, :n] = torch.tensor(e["input_ids"])
        types[r, :n] = torch.tensor(e["token_type_ids"])
        mask[r, :n] = 1
    target = torch.tensor([e["score"] / 5.0 for e in examples], dtype=torch.float)
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}, target


class MeanPoolRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = AutoModel.from_pretrained(model_path())
        self.proj = nn.Linear(self.backbone.config.hidden_size, 1)

    def forward(self, batch):
        states = self.backbone(**batch).last_hidden_state
        w = batch["attention_mask"].unsqueeze(-1).float()
        sentence = (states * w).sum(dim=1) / w.sum(dim=1)
        return self.proj(sentence).view(-1)


def mae(pred, target):
    return torch.abs(pred - target).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-5)
    args = ap.parse_args()
    torch.manual_seed(21)

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    train = pretokenize(tokenizer, load_stsb("train"))
    dev = pretokenize(tokenizer, load_stsb("dev"), limit=400)
    train_loader = DataLoader(train, batch_size=16, shuffle=True, collate_fn=collate_fn)
    dev_loader = DataLoader(dev, batch_size=50, collate_fn=collate_fn)

    model = MeanPoolRegressor()
    optim = torch.optim.Adam(model.parameters(), lr=args.lr)

    done = 0
    model.train()
    while done < args.max_steps:
        for batch, target in train_loader:
            optim.zero_grad()
            loss = mae(model(batch), target)
            loss.backward()
            optim.step()
            done += 1
            if done % 20 == 0:
                print(f"{done:>4}  mae {loss.item():.4f}")
            if done >= args.max_steps:
                break

    model.eval()
    out, gold = [], []
    with torch.no_grad():
        for batch, target in dev_loader:
            out.append(model(batch))
            gold.append(target.view(-1))
    out, gold = torch.cat(out).numpy(), torch.cat(gold).numpy()
    print(f"DEV_METRIC pearson={np.corrcoef(out, gold)[0, 1]:.4f} pred_std={out.std():.4f}")


if __name__ == "__main__":
    main()
