"""LoRA fine-tuning of MiniLM as an STS-B cross-encoder (PEFT + HF Trainer).

The pair goes through the encoder together; AutoModelForSequenceClassification
with num_labels=1 gives a regression head (MSE). Only the LoRA adapters and the
new head train.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import tempfile

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from defib.demos.data import load_stsb, model_path


class StsbPairs(torch.utils.data.Dataset):
    def __init__(self, rows, tokenizer, limit=None):
        n = len(rows) if limit is None else limit
        self.enc = tokenizer(rows.sentence1[:n], rows.sentence2[:n], truncation=True, max_length=128)
        self.labels = [s / 5.0 for s in rows.score[:n]]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        item = {k: v[i] for k, v in self.enc.items()}
        item["labels"] = float(self.labels[i])
        return item


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    train_ds = StsbPairs(load_stsb("train"), tokenizer)
    dev_ds = StsbPairs(load_stsb("dev"), tokenizer, limit=400)

    torch.manual_seed(args.seed)
    base = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=1)
    lora_config = LoraConfig(
        r=args.rank,
        lora_alpha=2 * args.rank,
        lora_dropout=0.1,
        target_modules=["query", "value"],
    )
    model = get_peft_model(base, lora_config)
    model.print_trainable_parameters()

    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="stsb_lora_"),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=int(0.06 * args.max_steps),
        weight_decay=0.01,
        max_steps=args.max_steps,
        logging_steps=25,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()

    out = trainer.predict(dev_ds)
    preds = np.asarray(out.predictions).reshape(-1)
    gold = np.asarray(dev_ds.labels)
    pearson = np.corrcoef(preds, gold)[0, 1] if preds.std() > 1e-6 else 0.0
    print(f"DEV_METRIC pearson={pearson:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
