"""STS-B regression with the transformers Trainer and a compute_loss override.

AutoModelForSequenceClassification(num_labels=1) on tokenised sentence pairs; the
Trainer subclass computes its own MSE on score/5; the schedule is the Trainer's own
(cosine, warmup given as a fraction of training through warmup_steps < 1).
Dev metric: Spearman of the predicted scores against the gold scores.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WANDB_DISABLED", "true")

import argparse
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from scipy.stats import spearmanr
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)

from defib.demos.data import load_stsb, model_path

MAX_LEN = 96
DEV_N = 400


class MSETrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        preds = outputs.logits.squeeze(-1)
        loss = F.mse_loss(preds, labels.float())
        return (loss, outputs) if return_outputs else loss


def tokenised(tokenizer, rows, n=None):
    n = n or len(rows)
    ds = Dataset.from_dict({"s1": rows.sentence1[:n], "s2": rows.sentence2[:n],
                            "labels": [x / 5.0 for x in rows.score[:n]]})
    return ds.map(lambda b: tokenizer(b["s1"], b["s2"], truncation=True, max_length=MAX_LEN),
                  batched=True, remove_columns=["s1", "s2"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=21)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    tok = AutoTokenizer.from_pretrained(model_path())
    model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=1)
    train_ds = tokenised(tok, load_stsb("train"))
    dev_rows = load_stsb("dev")
    dev_ds = tokenised(tok, dev_rows, DEV_N)

    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp,
            max_steps=args.max_steps,
            per_device_train_batch_size=16,
            per_device_eval_batch_size=64,
            learning_rate=5e-5,
            lr_scheduler_type="cosine",
            warmup_steps=500,
            weight_decay=0.01,
            logging_steps=20,
            save_strategy="no",
            report_to="none",
            seed=args.seed,
            use_cpu=True,
            dataloader_num_workers=0,
        )
        trainer = MSETrainer(model=model, args=targs, train_dataset=train_ds,
                             data_collator=DataCollatorWithPadding(tok))
        trainer.train()
        out = trainer.predict(dev_ds)

    pred = np.asarray(out.predictions).reshape(-1)
    gold = np.asarray(dev_rows.score[:DEV_N])
    rho = float(np.nan_to_num(spearmanr(pred, gold).correlation)) if pred.std() > 1e-6 else 0.0
    print(f"DEV_METRIC spearman={rho:.4f} pred_std={pred.std():.4f}")


if __name__ == "__main__":
    main()
