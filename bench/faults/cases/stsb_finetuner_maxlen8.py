"""STS-B regression with a mean-pooled MiniLM and a tiny training class."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import load_stsb, model_path


@dataclass
class Config:
    max_steps: int = 200
    seed: int = 0
    lr: float = 4e-5
    batch_size: int = 16
    max_length: int = 8
    warmup: int = 20
    clip: float = 1.0


class MeanPoolRegressor(nn.Module):
    def __init__(self, path):
        super().__init__()
        self.bert = AutoModel.from_pretrained(path)
        self.out = nn.Linear(self.bert.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.out(pooled).squeeze(-1)


class Finetuner:
    def __init__(self, cfg, model, tokenizer):
        self.cfg = cfg
        self.model = model
        self.tokenizer = tokenizer
        self.loss_fn = nn.MSELoss()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
        warm, total = cfg.warmup, cfg.max_steps
        self.scheduler = LambdaLR(
            self.optimizer,
            lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))),
        )

    def collate(self, examples):
        first = [e[0] for e in examples]
        second = [e[1] for e in examples]
        batch = self.tokenizer(first, second, padding=True, truncation=True,
                               max_length=self.cfg.max_length, return_tensors="pt")
        batch["target"] = torch.tensor([e[2] for e in examples], dtype=torch.float32)
        return batch

    def fit(self, examples):
        loader = DataLoader(examples, batch_size=self.cfg.batch_size, shuffle=True,
                            collate_fn=self.collate)
        self.model.train()
        step = 0
        while step < self.cfg.max_steps:
            for batch in loader:
                target = batch.pop("target")
                pred = self.model(**batch)
                loss = self.loss_fn(pred, target)
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
                self.optimizer.step()
                self.scheduler.step()
                step += 1
                if step % 25 == 0:
                    print(f"[{step}/{self.cfg.max_steps}] mse={loss.item():.3f}")
                if step == self.cfg.max_steps:
                    return

    @torch.no_grad()
    def predict(self, examples):
        self.model.eval()
        loader = DataLoader(examples, batch_size=64, collate_fn=self.collate)
        outs = []
        for batch in loader:
            batch.pop("target")
            outs.append(self.model(**batch))
        return torch.cat(outs).view(-1).numpy()


def to_examples(rows, n):
    return list(zip(rows.sentence1[:n], rows.sentence2[:n], rows.score[:n]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    cfg = Config(max_steps=a.max_steps, seed=a.seed)

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    model = MeanPoolRegressor(model_path())
    tuner = Finetuner(cfg, model, tokenizer)

    train = to_examples(load_stsb("train"), 3200)
    dev = to_examples(load_stsb("dev"), 400)
    tuner.fit(train)

    preds = tuner.predict(dev)
    gold = np.array([e[2] for e in dev])
    r = np.corrcoef(preds, gold)[0, 1]
    print(f"DEV_METRIC pearson={r:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
