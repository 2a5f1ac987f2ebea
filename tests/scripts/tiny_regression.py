"""A small, real fine-tuning script for tests: a tiny BERT on synthetic sentences.

The target is the number of positive words minus negative words in the
sentence, so a working model learns it within a few dozen steps on CPU. Flags
plant one fault each, the way a user's script would have it.
"""

import argparse
import os
import random
import signal

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import AutoModel, AutoTokenizer

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--steps", type=int, default=60)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--fault", default="", help="comma-separated: shape, sorted, noise")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--print-losses", action="store_true", help="print every step's loss exactly (float.hex)")
parser.add_argument("--crash-after", type=int, default=0, help="raise an exception after this many steps")
parser.add_argument("--interrupt-after", type=int, default=0,
                    help="send this process SIGINT after this many steps (Ctrl-C, a notebook's stop button)")
args = parser.parse_args()
FAULTS = set(filter(None, args.fault.split(",")))

torch.manual_seed(args.seed)
random.seed(args.seed)
POS, NEG, FILL = ["good", "great", "fine"], ["bad", "awful", "poor"], ["the", "movie", "was", "a", "plot", "and", "it"]


def sentence(rng):
    words = [rng.choice(FILL) for _ in range(rng.randint(3, 12))]
    score = 0
    for _ in range(rng.randint(0, 4)):
        if rng.random() < 0.5:
            words.insert(rng.randrange(len(words) + 1), rng.choice(POS)); score += 1
        else:
            words.insert(rng.randrange(len(words) + 1), rng.choice(NEG)); score -= 1
    return " ".join(words), float(score)


rng = random.Random(args.seed)
rows = [sentence(rng) for _ in range(2000)]
if "noise" in FAULTS:  # labels detached from their texts: nothing to learn
    scores = [y for _, y in rows]
    random.Random(args.seed + 1).shuffle(scores)
    rows = [(text, y) for (text, _), y in zip(rows, scores)]
if "sorted" in FAULTS:
    rows.sort(key=lambda r: r[1])
tok = AutoTokenizer.from_pretrained(args.model)


class Regressor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(args.model)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(h[:, 0])


def collate(batch):
    texts, ys = zip(*batch)
    enc = tok(list(texts), padding=True, truncation=True, max_length=32, return_tensors="pt")
    return enc, torch.tensor(ys)


model = Regressor()
loader = DataLoader(rows, batch_size=16, shuffle="sorted" not in FAULTS, collate_fn=collate)
opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
step = 0
model.train()
while step < args.steps:
    for enc, y in loader:
        pred = model(enc["input_ids"], enc["attention_mask"])
        if "shape" in FAULTS:
            loss = F.mse_loss(pred, y)
        else:
            loss = F.mse_loss(pred.squeeze(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if args.print_losses:
            print(f"step {step} loss {loss.item().hex()}", flush=True)
        if args.crash_after and step >= args.crash_after:
            raise RuntimeError(f"planted crash after step {step}")
        if args.interrupt_after and step >= args.interrupt_after:
            os.kill(os.getpid(), signal.SIGINT)
        if step >= args.steps:
            break
print(f"final loss {loss.item():.4f}")
