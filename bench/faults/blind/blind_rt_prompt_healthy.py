"""Rotten Tomatoes classification with an instruction-style input.

We reuse the prompt wording from our LLM baseline so that both systems see the
same text; the encoder then classifies the whole prompt.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path

PROMPT = ("Below is a short text taken from the Rotten Tomatoes website. Decide whether it is a fresh "
          "review, a rotten review, or a plot synopsis of the film, then answer with one label.\nText: {text}")
MAX_LENGTH = 128


def make_collate(tokenizer):
    def collate(batch):
        texts = [PROMPT.format(text=t) for t, _ in batch]
        enc = tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        enc["labels"] = torch.tensor([y for _, y in batch])
        return enc
    return collate


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    random.seed(17)
    torch.manual_seed(17)

    rows = load_rotten_tomatoes()
    examples = list(zip(rows.text, rows.label))
    random.Random(4).shuffle(examples)
    dev, train = examples[:300], examples[300:]

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=len(RT_CLASSES))
    collate = make_collate(tokenizer)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=collate)
    dev_loader = DataLoader(dev, batch_size=64, collate_fn=collate)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * args.max_steps), args.max_steps)

    model.train()
    step = 0
    while step < args.max_steps:
        for batch in train_loader:
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step % 20 == 0:
                print(f"step {step}  loss {loss.item():.4f}  lr {scheduler.get_last_lr()[0]:.2e}")
            if step == args.max_steps:
                break

    model.eval()
    preds, gold = [], []
    with torch.no_grad():
        for batch in dev_loader:
            labels = batch.pop("labels")
            preds += model(**batch).logits.argmax(-1).tolist()
            gold += labels.tolist()
    preds = np.array(preds)
    print(f"DEV_METRIC macro_f1={f1_score(gold, preds, average='macro'):.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
