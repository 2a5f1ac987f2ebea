"""Rotten Tomatoes (fresh / rotten / plot) with HF Accelerate.

Micro-batches of 16 with 2 gradient-accumulation steps handled by
accelerator.accumulate(); AdamW with linear warmup and decay.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from sklearn.metrics import f1_score
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    get_linear_schedule_with_warmup,
)

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path


def encode(tokenizer, rows, idx):
    enc = tokenizer([rows.text[i] for i in idx], truncation=True, max_length=128)
    return [{"input_ids": enc["input_ids"][k], "attention_mask": enc["attention_mask"][k],
             "labels": rows.label[i]} for k, i in enumerate(idx)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=200, help="optimizer updates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--per-device-batch-size", type=int, default=16)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=2)
    args = parser.parse_args()

    accelerator = Accelerator(gradient_accumulation_steps=args.gradient_accumulation_steps)
    set_seed(args.seed)

    rows = load_rotten_tomatoes()
    perm = np.random.RandomState(11).permutation(len(rows))
    dev_idx, train_idx = perm[:400], perm[400:]
    tokenizer = AutoTokenizer.from_pretrained(model_path())
    collator = DataCollatorWithPadding(tokenizer)
    train_dl = DataLoader(encode(tokenizer, rows, train_idx), batch_size=args.per_device_batch_size,
                          shuffle=True, collate_fn=collator)
    dev_dl = DataLoader(encode(tokenizer, rows, dev_idx), batch_size=64, collate_fn=collator)

    model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=len(RT_CLASSES))
    total_batch_size = args.per_device_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    accelerator.print(f"total batch size {total_batch_size}")
    learning_rate = args.lr
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * args.max_steps), args.max_steps)
    model, optimizer, train_dl, dev_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, dev_dl, scheduler)

    model.train()
    updates = 0
    while updates < args.max_steps:
        for batch in train_dl:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                updates += 1
                if updates % 20 == 0:
                    accelerator.print(f"update {updates} loss {loss.item():.4f}")
                if updates >= args.max_steps:
                    break

    model.eval()
    preds, labels = [], []
    with torch.no_grad():
        for batch in dev_dl:
            logits = model(**batch).logits
            p, y = accelerator.gather_for_metrics((logits.argmax(-1), batch["labels"]))
            preds.append(p.cpu())
            labels.append(y.cpu())
    preds, labels = torch.cat(preds).numpy(), torch.cat(labels).numpy()
    macro_f1 = f1_score(labels, preds, average="macro")
    accelerator.print(f"DEV_METRIC macro_f1={macro_f1:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
