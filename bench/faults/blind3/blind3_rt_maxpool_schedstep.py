"""Rotten Tomatoes (fresh / rotten / plot): max-pooled MiniLM + linear head.

Step 1 tokenizes the corpus once and saves the features with torch.save, so
reruns only load the cached file. Step 2 trains with micro-batches of 8 and
gradient accumulation (4 micro-batches per update); --max-steps counts updates.
The loss is cross-entropy with label smoothing, written out by hand.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import hashlib
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path

MICRO_BATCH = 8
ACCUM = 4
MAX_LEN = 64
SMOOTHING = 0.1
DEV_EVERY = 35  # ~400 dev reviews


def build_tokenizer():
    return AutoTokenizer.from_pretrained(model_path())


def cached_features(tokenizer, rows, cache_dir):
    """Tokenize every review once (no padding) and keep the result on disk."""
    spec = tokenizer.backend_tokenizer.to_str() + f"|{MAX_LEN}|{len(rows)}"
    key = hashlib.md5(spec.encode()).hexdigest()[:10]
    path = Path(cache_dir) / f"rt_features_{key}.pt"
    if not path.exists():
        enc = tokenizer(rows.text, truncation=True, max_length=MAX_LEN)
        feats = [{"input_ids": ids, "label": lab} for ids, lab in zip(enc["input_ids"], rows.label)]
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(feats, tmp)
        os.replace(tmp, path)
    return torch.load(path)


class Reviews(Dataset):
    def __init__(self, feats):
        self.feats = feats

    def __len__(self):
        return len(self.feats)

    def __getitem__(self, i):
        return self.feats[i]


class PadCollator:
    def __init__(self, pad_id):
        self.pad_id = pad_id

    def __call__(self, feats):
        width = max(len(f["input_ids"]) for f in feats)
        ids = torch.full((len(feats), width), self.pad_id, dtype=torch.long)
        for r, f in enumerate(feats):
            ids[r, :len(f["input_ids"])] = torch.tensor(f["input_ids"])
        return {
            "input_ids": ids,
            "attention_mask": (ids != self.pad_id).long(),
            "labels": torch.tensor([f["label"] for f in feats]),
        }


class MaxPoolClassifier(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(model_path())
        self.head = nn.Linear(self.encoder.config.hidden_size, n_classes)
        # start from uniform predictions
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        h = h.masked_fill(attention_mask.unsqueeze(-1) == 0, -1e4)
        return self.head(h.max(dim=1).values)


def smoothed_cross_entropy(logits, labels, eps):
    logp = F.log_softmax(logits, dim=-1)
    nll = -logp.gather(1, labels.unsqueeze(1)).squeeze(1)
    uniform = -logp.mean(dim=-1)
    return ((1 - eps) * nll + eps * uniform).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=125, help="optimizer updates")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "rt_cache"))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    os.makedirs(args.cache_dir, exist_ok=True)

    tokenizer = build_tokenizer()
    rows = load_rotten_tomatoes()
    feats = cached_features(tokenizer, rows, args.cache_dir)
    # stratified dev split: every DEV_EVERY-th review of the class-sorted list
    by_class = sorted(range(len(feats)), key=lambda i: feats[i]["label"])
    dev_ids = set(by_class[::DEV_EVERY])
    dev_feats = [feats[i] for i in by_class if i in dev_ids]
    train_feats = [feats[i] for i in by_class if i not in dev_ids]

    collate = PadCollator(tokenizer.pad_token_id)
    gen = torch.Generator().manual_seed(args.seed)
    train_dl = DataLoader(Reviews(train_feats), batch_size=MICRO_BATCH, shuffle=True, collate_fn=collate,
                          generator=gen, drop_last=True)
    dev_dl = DataLoader(Reviews(dev_feats), batch_size=64, collate_fn=collate)

    model = MaxPoolClassifier(len(RT_CLASSES))
    encoder_params = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
    head_params = [p for n, p in model.named_parameters() if n.startswith("head.")]
    optimizer = torch.optim.AdamW([
        {"params": encoder_params, "lr": args.lr},
        {"params": head_params, "lr": args.head_lr},
    ], weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, args.max_steps // 10), args.max_steps)

    model.train()
    update = 0
    micro_steps = args.max_steps * ACCUM
    batches = iter(train_dl)
    for micro in range(micro_steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(train_dl)
            batch = next(batches)
        logits = model(batch["input_ids"], batch["attention_mask"])
        loss = smoothed_cross_entropy(logits, batch["labels"], SMOOTHING) / ACCUM
        loss.backward()
        scheduler.step()
        if (micro + 1) % ACCUM == 0:
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            update += 1
            if update % 10 == 0:
                print(f"update {update}/{args.max_steps} loss {loss.item() * ACCUM:.4f} "
                      f"lr {scheduler.get_last_lr()[0]:.2e}")

    model.eval()
    preds, gold = [], []
    with torch.no_grad():
        for batch in dev_dl:
            preds.append(model(batch["input_ids"], batch["attention_mask"]).argmax(-1))
            gold.append(batch["labels"])
    preds, gold = torch.cat(preds).numpy(), torch.cat(gold).numpy()
    f1s = []
    for c in range(len(RT_CLASSES)):
        tp = np.sum((preds == c) & (gold == c))
        denom = np.sum(preds == c) + np.sum(gold == c)
        f1s.append(2 * tp / denom if denom else 0.0)
    print("per-class F1 " + "  ".join(f"{c}={f:.3f}" for c, f in zip(RT_CLASSES, f1s)))
    print(f"DEV_METRIC macro_f1={np.mean(f1s):.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
