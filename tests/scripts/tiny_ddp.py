"""A tiny BERT regressor trained with DistributedDataParallel (gloo, CPU), for ``torchrun`` tests.

Run as ``torchrun --nproc_per_node=N tiny_ddp.py --model DIR [--fault shape] [--watch HTML]``;
each rank trains on its shard of the synthetic sentences (score = positive
minus negative words). ``--fault shape`` plants the broadcasting MSE.
``--watch HTML`` trains inside ``defib.watch()`` (the one-line API instead of
``defib run``), then calls ``report()`` and ``write_html(HTML.<rank>)`` on every
rank: only rank 0 may print or write.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rules"))

import torch
import torch.distributed as dist
import torch.nn.functional as F
from helpers import sentences
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from transformers import AutoModel, AutoTokenizer

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--steps", type=int, default=60)
parser.add_argument("--fault", default="")
parser.add_argument("--watch", default="")
args = parser.parse_args()

dist.init_process_group("gloo")
torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(args.model)


class Regressor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(args.model, add_pooling_layer=False)  # DDP: no unused weights
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()  # (B, T, 1)
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head((h * mask).sum(1) / mask.sum(1))  # (B, 1)


def collate(batch):
    texts, ys = zip(*batch)
    enc = tok(list(texts), padding=True, truncation=True, max_length=32, return_tensors="pt")
    return enc, torch.tensor(ys)


rows = sentences(2000)
sampler = DistributedSampler(rows, shuffle=True, seed=0)
loader = DataLoader(rows, batch_size=16, sampler=sampler, collate_fn=collate)
model = DistributedDataParallel(Regressor())
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
step, epoch = 0, 0
model.train()
if args.watch:
    import defib

    watching = defib.watch().start()
while step < args.steps:
    sampler.set_epoch(epoch)
    for enc, y in loader:
        pred = model(enc["input_ids"], enc["attention_mask"])
        loss = F.mse_loss(pred, y) if args.fault == "shape" else F.mse_loss(pred.squeeze(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step >= args.steps:
            break
    epoch += 1
if args.watch:
    watching.stop()
    watching.report()
    watching.write_html(f"{args.watch}.{dist.get_rank()}")
print(f"rank {dist.get_rank()} final loss {loss.item():.4f}", flush=True)
dist.destroy_process_group()
