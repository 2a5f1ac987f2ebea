# Rotten Tomatoes: fresh / rotten / plot. "plot" is ~8% of the rows, so we train
# with a focal loss (Lin et al. 2017) instead of plain cross-entropy.
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_constant_schedule_with_warmup

from defib.demos.data import load_rotten_tomatoes, model_path

p = argparse.ArgumentParser()
p.add_argument("--max-steps", type=int, default=250)
p.add_argument("--batch-size", type=int, default=24)
p.add_argument("--lr", type=float, default=4e-5)
p.add_argument("--gamma", type=float, default=2.0)
args = p.parse_args()

random.seed(0)
torch.manual_seed(0)


def focal_loss(logits, target, gamma):
    logp = F.log_softmax(logits, dim=-1)
    logp_t = logp.gather(1, target.unsqueeze(1)).squeeze(1)
    p_t = logp_t.exp()
    return (-(1.0 - p_t) ** gamma * logp_t).mean()


data = load_rotten_tomatoes()
pairs = list(zip(data.text, data.label))
random.Random(123).shuffle(pairs)
dev, train = pairs[:500], pairs[500:]

tokenizer = AutoTokenizer.from_pretrained(model_path())
model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=3)
# keep the word embeddings fixed: the corpus is small and they are big
for name, param in model.named_parameters():
    if "word_embeddings" in name:
        param.requires_grad = False

optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
scheduler = get_constant_schedule_with_warmup(optimizer, num_warmup_steps=10)


def batches(items, bs, shuffle):
    items = list(items)
    if shuffle:
        random.shuffle(items)
    for i in range(0, len(items), bs):
        chunk = items[i:i + bs]
        texts, labels = zip(*chunk)
        enc = tokenizer(list(texts), padding=True, truncation=True, max_length=96, return_tensors="pt")
        yield enc, torch.tensor(labels)


model.train()
step = 0
while step < args.max_steps:
    for enc, labels in batches(train, args.batch_size, shuffle=True):
        logits = model(**enc).logits
        probs = logits.softmax(dim=-1)  # for the running accuracy below
        loss = focal_loss(logits, labels, args.gamma)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        step += 1
        if step % 20 == 0:
            acc = (probs.argmax(-1) == labels).float().mean().item()
            print(f"step {step:4d}  focal {loss.item():.4f}  acc {acc:.3f}")
        if step >= args.max_steps:
            break

model.eval()
preds, gold = [], []
with torch.no_grad():
    for enc, labels in batches(dev, 100, shuffle=False):
        preds.extend(model(**enc).logits.argmax(-1).tolist())
        gold.extend(labels.tolist())
preds = np.array(preds)
print(f"DEV_METRIC macro_f1={f1_score(gold, preds, average='macro'):.4f} pred_std={preds.std():.4f}")
