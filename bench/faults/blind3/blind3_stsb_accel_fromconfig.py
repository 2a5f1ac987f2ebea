"""STS-B regression with HF Accelerate (runs the same on CPU, one GPU or several).

Effective batch 32 = micro-batch 16 x 2 accumulation steps, counted by hand.
Mean-pooled MiniLM + a linear layer, plain MSE on scores scaled to [0, 1].
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset
from transformers import AutoConfig, AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

from defib.demos.data import load_stsb, model_path

MICRO_BATCH = 16
ACCUMULATE = 2


class PairDataset(Dataset):
    def __init__(self, rows, idx=None):
        self.idx = list(range(len(rows))) if idx is None else list(idx)
        self.rows = rows

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, k):
        i = self.idx[k]
        return self.rows.sentence1[i], self.rows.sentence2[i], self.rows.score[i]


class Collate:
    def __init__(self, tokenizer, max_length=96):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, batch):
        a, b, s = zip(*batch)
        enc = self.tokenizer(list(a), list(b), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        enc["target"] = torch.tensor(s, dtype=torch.float32) / 5.0
        return enc


class Regressor(torch.nn.Module):
    def __init__(self, name):
        super().__init__()
        config = AutoConfig.from_pretrained(name, hidden_dropout_prob=0.15)
        self.encoder = AutoModel.from_config(config)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1)
        return self.head(pooled).squeeze(-1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=300, help="optimizer updates")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    set_seed(args.seed)

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    train_rows, dev_rows = load_stsb("train"), load_stsb("dev")
    dev_idx = np.random.RandomState(3).permutation(len(dev_rows))[:320]
    collate = Collate(tokenizer)
    train_dl = DataLoader(PairDataset(train_rows), batch_size=MICRO_BATCH, shuffle=True, collate_fn=collate)
    dev_dl = DataLoader(PairDataset(dev_rows, dev_idx), batch_size=64, collate_fn=collate)

    model = Regressor(model_path())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * args.max_steps), args.max_steps)
    model, optimizer, train_dl, dev_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, dev_dl, scheduler)

    updates, micro = 0, 0
    model.train()
    while updates < args.max_steps:
        for batch in train_dl:
            target = batch.pop("target")
            pred = model(**batch)
            loss = F.mse_loss(pred, target) / ACCUMULATE
            accelerator.backward(loss)
            micro += 1
            if micro % ACCUMULATE:
                continue
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            updates += 1
            if updates % 20 == 0:
                accelerator.print(f"update {updates}: loss {loss.item() * ACCUMULATE:.4f} lr {scheduler.get_last_lr()[0]:.2e}")
            if updates >= args.max_steps:
                break

    model.eval()
    preds, golds = [], []
    with torch.no_grad():
        for batch in dev_dl:
            target = batch.pop("target")
            p, t = accelerator.gather_for_metrics((model(**batch), target))
            preds.append(p.cpu())
            golds.append(t.cpu())
    preds, golds = torch.cat(preds).numpy(), torch.cat(golds).numpy()
    pearson = np.corrcoef(preds, golds)[0, 1]
    accelerator.print(f"DEV_METRIC pearson={pearson:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
