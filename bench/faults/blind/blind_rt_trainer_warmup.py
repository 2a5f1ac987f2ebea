"""Rotten Tomatoes (fresh / rotten / plot) with the HF Trainer.

"plot" is rare, so the Trainer subclass below uses an inverse-frequency
weighted cross-entropy instead of the model's built-in loss.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random
import tempfile
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path


class ReviewDataset(torch.utils.data.Dataset):
    def __init__(self, texts, labels, tokenizer, max_length=128):
        self.encodings = tokenizer(texts, truncation=True, max_length=max_length)
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        item = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = self.labels[i]
        return item


class WeightedLossTrainer(Trainer):
    def __init__(self, *args, class_weights=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        weight = self.class_weights.to(outputs.logits.device)
        loss = F.cross_entropy(outputs.logits, labels, weight=weight)
        return (loss, outputs) if return_outputs else loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=5e-5)
    cli = parser.parse_args()

    random.seed(cli.seed)
    np.random.seed(cli.seed)
    torch.manual_seed(cli.seed)

    rows = load_rotten_tomatoes()
    perm = np.random.RandomState(7).permutation(len(rows))
    dev_idx, train_idx = perm[:300], perm[300:]

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    train_ds = ReviewDataset([rows.text[i] for i in train_idx], [rows.label[i] for i in train_idx], tokenizer)
    dev_ds = ReviewDataset([rows.text[i] for i in dev_idx], [rows.label[i] for i in dev_idx], tokenizer)

    counts = Counter(train_ds.labels)
    class_weights = torch.tensor(
        [len(train_ds) / (len(RT_CLASSES) * counts[c]) for c in range(len(RT_CLASSES))], dtype=torch.float
    )
    print("class weights:", [round(w, 3) for w in class_weights.tolist()])

    model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=len(RT_CLASSES))

    # 10% of training for warmup
    warmup_steps = int(0.1 * len(train_ds))

    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="rt_trainer_"),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=cli.lr,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        warmup_steps=warmup_steps,
        max_steps=cli.max_steps,
        logging_steps=20,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=cli.seed,
    )
    trainer = WeightedLossTrainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
        class_weights=class_weights,
    )
    trainer.train()

    # held-out predictions (Trainer runs these in eval mode without grad)
    logits = trainer.predict(dev_ds).predictions
    if isinstance(logits, tuple):
        logits = logits[0]
    pred_ids = np.asarray(logits).argmax(axis=-1)
    macro_f1 = f1_score(dev_ds.labels, pred_ids, average="macro")
    print(f"DEV_METRIC macro_f1={macro_f1:.4f} pred_std={pred_ids.std():.4f}")


if __name__ == "__main__":
    main()
