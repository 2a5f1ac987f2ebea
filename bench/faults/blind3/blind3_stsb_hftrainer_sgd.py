"""Fine-tune MiniLM on STS-B with the stock transformers Trainer.

No custom loss: AutoModelForSequenceClassification with num_labels=1 does MSE
itself. Scores are divided by 5 so the labels live in [0, 1].
"""
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

from defib.demos.data import load_stsb, model_path


def build_features(tokenizer, rows, indices):
    enc = tokenizer([rows.sentence1[i] for i in indices], [rows.sentence2[i] for i in indices],
                    truncation=True, max_length=128)
    features = []
    for j, i in enumerate(indices):
        item = {key: enc[key][j] for key in enc.keys()}
        item["labels"] = rows.score[i] / 5.0
        features.append(item)
    return features


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=13)
    return p.parse_args()


def main():
    args = parse_args()
    set_seed(args.seed)

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=1)

    train_rows, dev_rows = load_stsb("train"), load_stsb("dev")
    train_features = build_features(tokenizer, train_rows, range(len(train_rows)))
    dev_idx = np.random.RandomState(0).choice(len(dev_rows), 400, replace=False)
    dev_features = build_features(tokenizer, dev_rows, dev_idx)

    targs = TrainingArguments(
        output_dir=os.path.join(tempfile.gettempdir(), "stsb-minilm"),
        max_steps=args.max_steps,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        optim="sgd",
        learning_rate=4e-5,
        weight_decay=0.01,
        warmup_steps=0.1,
        lr_scheduler_type="linear",
        logging_steps=25,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_features,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()

    out = trainer.predict(dev_features)
    preds = np.asarray(out.predictions).reshape(-1)
    gold = np.array([f["labels"] for f in dev_features])
    pearson = float(np.corrcoef(preds, gold)[0, 1])
    print(f"DEV_METRIC pearson={pearson:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
