"""Rotten Tomatoes (fresh / rotten / plot) with a LoRA encoder and a head kept outside it.

SentenceEncoder (an nn.Module: PEFT LoRA on query/value of the pretrained BertModel + masked
mean pooling) and a separate nn.Linear head that the loop calls on the pooled vectors.
Plain loop: bf16 torch.autocast on CPU, torch.amp.GradScaler, unscale + clip, scaler.step.
After training the adapter is exported with save_pretrained and the head with torch.save; the
dev slice is scored by a fresh encoder + head loaded back from that folder.
Dev metric: macro F1 over a held-out slice.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path

MAX_LEN = 64
N_DEV = 600


class SentenceEncoder(nn.Module):
    def __init__(self, path, rank=8, adapter=None):
        super().__init__()
        bert = AutoModel.from_pretrained(path)
        self.dim = bert.config.hidden_size
        if adapter is None:
            cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05, target_modules=["query", "value"])
            self.bert = get_peft_model(bert, cfg)
        else:
            self.bert = PeftModel.from_pretrained(bert, adapter)

    def forward(self, input_ids, attention_mask):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-6)


def export(encoder, head, folder):
    encoder.bert.save_pretrained(folder)
    torch.save(head.state_dict(), os.path.join(folder, "head.pt"))


def load_for_inference(folder):
    encoder = SentenceEncoder(model_path(), adapter=folder)
    head = nn.Linear(encoder.dim, len(RT_CLASSES))
    return encoder.eval(), head.eval()


def split(rows, seed):
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    return idx[N_DEV:], idx[:N_DEV]


def make_collate(pad_id):
    def collate(batch):
        ids = [torch.tensor(x) for x, _ in batch]
        input_ids = nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=pad_id)
        attention_mask = (input_ids != pad_id).long()
        labels = torch.tensor([y for _, y in batch])
        return input_ids, attention_mask, labels
    return collate


def macro_f1(gold, pred, k):
    f1s = []
    for c in range(k):
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    rows = load_rotten_tomatoes()
    tok = AutoTokenizer.from_pretrained(model_path())
    enc = tok(rows.text, truncation=True, max_length=MAX_LEN)["input_ids"]
    train_idx, dev_idx = split(rows, args.seed)
    train = [(enc[i], rows.label[i]) for i in train_idx]
    dev = [(enc[i], rows.label[i]) for i in dev_idx]
    collate = make_collate(tok.pad_token_id)
    loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True, collate_fn=collate)

    encoder = SentenceEncoder(model_path())
    head = nn.Linear(encoder.dim, len(RT_CLASSES))
    params = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    scaler = torch.amp.GradScaler("cpu")

    step = 0
    encoder.train()
    while step < args.max_steps:
        for input_ids, attention_mask, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                logits = head(encoder(input_ids, attention_mask))
            loss = F.cross_entropy(logits.float(), labels)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            if step % 20 == 0:
                print(f"step {step} loss {loss.item():.4f}", flush=True)
            if step >= args.max_steps:
                break

    with tempfile.TemporaryDirectory() as folder:
        export(encoder, head, folder)
        encoder, head = load_for_inference(folder)

    preds, gold = [], []
    dev_loader = torch.utils.data.DataLoader(dev, batch_size=64, collate_fn=collate)
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        for input_ids, attention_mask, labels in dev_loader:
            preds.append(head(encoder(input_ids, attention_mask)).float().argmax(-1))
            gold.append(labels)
    preds = torch.cat(preds).numpy()
    gold = torch.cat(gold).numpy()
    print(f"DEV_METRIC macro_f1={macro_f1(gold, preds, len(RT_CLASSES)):.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
