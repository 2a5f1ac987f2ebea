"""A tiny BERT regression written as the transformers no-Trainer examples write it: an accelerate loop.

``Accelerator.prepare`` wraps the optimizer, scheduler and DataLoader,
``accelerator.backward`` replaces ``loss.backward()`` and
``accelerator.accumulate`` accumulates gradients; bfloat16 mixed precision
runs on CPU. ``--fault zero_grad`` plants one fault the way a user would.
"""

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--accumulate", type=int, default=2)
parser.add_argument("--fault", default="", help="zero_grad: cleared between backward() and step()")
args = parser.parse_args()

torch.manual_seed(0)
POS, NEG, FILL = ["good", "great", "fine"], ["bad", "awful", "poor"], ["the", "movie", "was", "a", "plot", "and"]
gen = torch.Generator().manual_seed(0)


def sentence(i):
    words = [FILL[(i * 7 + k) % len(FILL)] for k in range(3 + i % 5)]
    good, bad = i % 3, (i // 3) % 3
    return " ".join(words + POS[:good] + NEG[:bad]), float(good - bad)


rows = [sentence(i) for i in range(640)]
tok = AutoTokenizer.from_pretrained(args.model)


class Regressor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(args.model)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(h[:, 0]).squeeze(-1)


def collate(batch):
    texts, ys = zip(*batch)
    enc = tok(list(texts), padding=True, truncation=True, max_length=32, return_tensors="pt")
    return enc, torch.tensor(ys)


accelerator = Accelerator(mixed_precision="bf16", cpu=True, gradient_accumulation_steps=args.accumulate)
model = Regressor()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
loader = DataLoader(rows, batch_size=16, shuffle=True, collate_fn=collate, generator=gen)
scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=2, num_training_steps=200)
model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
model.train()
for enc, y in loader:
    with accelerator.accumulate(model):
        loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
        accelerator.backward(loss)
        if args.fault == "zero_grad":
            optimizer.zero_grad()  # planted
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
print(f"final loss {loss.item():.4f}")
