import os
os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import math
import random

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from seqeval.metrics import f1_score
from torch.utils.data import DataLoader
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    get_scheduler,
)

from defib.demos.data import model_path, wnut16_conll


def parse_args():
    parser = argparse.ArgumentParser(description="Fine-tune a token classifier on WNUT-16 with accelerate")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-device-train-batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--num-warmup-steps", type=int, default=10)
    parser.add_argument("--lr-scheduler-type", type=str, default="linear")
    parser.add_argument("--max-length", type=int, default=128)
    return parser.parse_args()


def load_wnut(path):
    sentences = []
    tokens, tags = [], []
    for line in open(path, encoding="utf-8"):
        parts = line.split()
        if not parts:
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
            continue
        tokens.append(parts[0])
        tags.append(parts[-1])
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags})
    return sentences


def main():
    args = parse_args()
    accelerator = Accelerator(cpu=True)
    set_seed(args.seed)
    torch.set_num_threads(1)

    sentences = load_wnut(wnut16_conll())
    order = list(range(len(sentences)))
    random.Random(7).shuffle(order)
    dev_idx, train_idx = order[:300], order[300:]

    label_list = sorted({t for s in sentences for t in s["tags"]})
    label_to_id = {l: i for i, l in enumerate(label_list)}

    config = AutoConfig.from_pretrained(model_path(), num_labels=len(label_list))
    config.id2label = dict(enumerate(label_list))
    config.label2id = label_to_id
    tokenizer = AutoTokenizer.from_pretrained(model_path(), use_fast=True)
    model = AutoModelForTokenClassification.from_pretrained(model_path(), config=config)

    def encode(example):
        tokenized = tokenizer(example["tokens"], is_split_into_words=True, truncation=True,
                              max_length=args.max_length)
        labels = []
        previous_word_idx = None
        for word_idx in tokenized.word_ids():
            if word_idx is None:
                labels.append(-100)
            elif word_idx != previous_word_idx:
                labels.append(label_to_id[example["tags"][word_idx]])
            else:
                labels.append(-100)
            previous_word_idx = word_idx
        tokenized["labels"] = labels
        return dict(tokenized)

    train_dataset = [encode(sentences[i]) for i in train_idx]
    eval_dataset = [encode(sentences[i]) for i in dev_idx]

    data_collator = DataCollatorForTokenClassification(tokenizer)
    train_dataloader = DataLoader(train_dataset, shuffle=True, collate_fn=data_collator,
                                  batch_size=args.per_device_train_batch_size)
    eval_dataloader = DataLoader(eval_dataset, collate_fn=data_collator, batch_size=64)

    no_decay = ["bias", "LayerNorm.weight"]
    optimizer_grouped_parameters = [
        {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)],
         "weight_decay": args.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(optimizer_grouped_parameters, lr=args.learning_rate)

    num_update_steps_per_epoch = len(train_dataloader)
    max_train_steps = args.max_steps
    num_train_epochs = math.ceil(max_train_steps / num_update_steps_per_epoch)
    lr_scheduler = get_scheduler(
        name=args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=args.num_warmup_steps,
        num_training_steps=max_train_steps,
    )

    model, optimizer, train_dataloader, eval_dataloader, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, eval_dataloader, lr_scheduler
    )

    completed_steps = 0
    for epoch in range(num_train_epochs):
        model.train()
        for step, batch in enumerate(train_dataloader):
            outputs = model(**batch)
            loss = outputs.loss
            accelerator.backward(loss)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
            completed_steps += 1
            if completed_steps % 25 == 0:
                accelerator.print(f"step {completed_steps} loss {loss.item():.4f} lr {lr_scheduler.get_last_lr()[0]:.2e}")
            if completed_steps >= max_train_steps:
                break
        if completed_steps >= max_train_steps:
            break

    model.eval()
    y_true, y_pred, flat = [], [], []
    for batch in eval_dataloader:
        with torch.no_grad():
            outputs = model(**batch)
        predictions = outputs.logits.argmax(dim=-1)
        predictions, labels = accelerator.gather_for_metrics((predictions, batch["labels"]))
        for pred_row, gold_row in zip(predictions.cpu().numpy(), labels.cpu().numpy()):
            keep = gold_row != -100
            y_pred.append([label_list[p] for p in pred_row[keep]])
            y_true.append([label_list[g] for g in gold_row[keep]])
            flat.extend(pred_row[keep].tolist())

    f1 = f1_score(y_true, y_pred)
    print(f"DEV_METRIC entity_f1={f1:.4f} pred_std={float(np.std(flat)):.4f}")


if __name__ == "__main__":
    main()
