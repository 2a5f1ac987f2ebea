import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import tempfile

import numpy as np
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path

id2label = dict(enumerate(RT_CLASSES))
label2id = {v: k for k, v in id2label.items()}


def build_split(tokenizer, rows, indices):
    texts = [rows.text[i] for i in indices]
    enc = tokenizer(texts, truncation=True, max_length=96)
    return [
        {"input_ids": enc["input_ids"][j], "attention_mask": enc["attention_mask"][j],
         "labels": rows.label[i]}
        for j, i in enumerate(indices)
    ]


def macro_f1(pred, gold, n_classes):
    scores = []
    for c in range(n_classes):
        tp = ((pred == c) & (gold == c)).sum()
        fp = ((pred == c) & (gold != c)).sum()
        fn = ((pred != c) & (gold == c)).sum()
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_seed(args.seed)

    rows = load_rotten_tomatoes()
    order = np.random.RandomState(1234).permutation(len(rows))
    dev_indices, train_indices = order[:600], order[600:4600]

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    train_data = build_split(tokenizer, rows, train_indices)
    dev_data = build_split(tokenizer, rows, dev_indices)

    model = AutoModelForSequenceClassification.from_pretrained(
        model_path(), num_labels=len(RT_CLASSES), id2label=id2label, label2id=label2id
    )

    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="rt-cls-"),
        max_steps=args.max_steps,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=4e-5,
        warmup_steps=20,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        logging_steps=25,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_data,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()

    result = trainer.predict(dev_data)
    pred = np.argmax(result.predictions, axis=-1)
    gold = np.array([rows.label[i] for i in dev_indices])
    print(f"DEV_METRIC macro_f1={macro_f1(pred, gold, len(RT_CLASSES)):.4f} pred_std={pred.std():.4f}")


if __name__ == "__main__":
    main()
