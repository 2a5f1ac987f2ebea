import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import tempfile

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from defib.demos.data import load_stsb, model_path


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, encodings, labels):
        self.encodings = encodings
        self.labels = labels

    def __getitem__(self, idx):
        item = {k: v[idx] for k, v in self.encodings.items()}
        item["labels"] = float(self.labels[idx]) * 20
        return item

    def __len__(self):
        return len(self.labels)


def encode(tokenizer, rows, n):
    return tokenizer(rows.sentence1[:n], rows.sentence2[:n], truncation=True, max_length=64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    opts = ap.parse_args()
    set_seed(opts.seed)

    ckpt = model_path()
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForSequenceClassification.from_pretrained(ckpt, num_labels=1)

    train_rows = load_stsb("train")
    dev_rows = load_stsb("dev")
    train_ds = PairDataset(encode(tokenizer, train_rows, 3200), train_rows.score[:3200])
    dev_ds = PairDataset(encode(tokenizer, dev_rows, 400), dev_rows.score[:400])

    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="stsb-trainer-"),
        max_steps=opts.max_steps,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=3e-5,
        warmup_steps=20,
        weight_decay=0.01,
        logging_steps=20,
        save_strategy="no",
        report_to="none",
        seed=opts.seed,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()

    out = trainer.predict(dev_ds)
    preds = np.asarray(out.predictions).reshape(-1)
    gold = np.asarray(dev_rows.score[:400], dtype=np.float64)
    pearson = np.corrcoef(preds, gold)[0, 1]
    print(f"DEV_METRIC pearson={pearson:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
