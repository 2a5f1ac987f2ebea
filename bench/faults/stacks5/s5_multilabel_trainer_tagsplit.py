import os
os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random
import tempfile

import numpy as np
import torch
from datasets import Dataset
from sklearn.metrics import f1_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainingArguments,
    set_seed,
)

from defib.demos.data import model_path, wnut16_conll

ENTITY_TYPES = ["company", "facility", "geo-loc", "movie", "musicartist",
                "other", "person", "product", "sportsteam", "tvshow"]

ap = argparse.ArgumentParser()
ap.add_argument("--max-steps", type=int, default=300)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()
set_seed(args.seed)
torch.set_num_threads(1)


def tweets_with_types(path):
    rows = []
    words, kinds = [], set()
    for line in list(open(path, encoding="utf-8")) + ["\n"]:
        if line.strip():
            word, tag = line.rstrip("\n").split("\t")
            words.append(word)
            if tag != "O":
                kinds.add(tag.split("-", 1)[0])
        elif words:
            rows.append((" ".join(words), kinds))
            words, kinds = [], set()
    return rows


rows = [r for r in tweets_with_types(wnut16_conll()) if r[1]]
random.Random(42).shuffle(rows)
dev_rows, train_rows = rows[:200], rows[200:]


def multi_hot(kinds):
    return [1.0 if k in kinds else 0.0 for k in ENTITY_TYPES]


tokenizer = AutoTokenizer.from_pretrained(model_path())


def build(rows_):
    ds = Dataset.from_dict({"text": [t for t, _ in rows_], "labels": [multi_hot(k) for _, k in rows_]})
    return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128),
                  batched=True, remove_columns=["text"])


train_ds, dev_ds = build(train_rows), build(dev_rows)

model = AutoModelForSequenceClassification.from_pretrained(
    model_path(),
    num_labels=len(ENTITY_TYPES),
    problem_type="multi_label_classification",
    id2label=dict(enumerate(ENTITY_TYPES)),
    label2id={k: i for i, k in enumerate(ENTITY_TYPES)},
)

LAST = {}


def compute_metrics(p: EvalPrediction):
    logits = torch.tensor(p.predictions)
    probs = torch.sigmoid(logits)
    preds = (probs > 0.5).int().numpy()
    gold = p.label_ids.astype(int)
    LAST["preds"] = preds
    return {"micro_f1": f1_score(gold, preds, average="micro", zero_division=0)}


targs = TrainingArguments(
    output_dir=tempfile.mkdtemp(prefix="s5_ml_"),
    max_steps=args.max_steps,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=64,
    learning_rate=3e-4,
    warmup_steps=10,
    weight_decay=0.01,
    logging_steps=25,
    eval_strategy="no",
    save_strategy="no",
    report_to="none",
    use_cpu=True,
    seed=args.seed,
)
trainer = Trainer(
    model=model,
    args=targs,
    train_dataset=train_ds,
    eval_dataset=dev_ds,
    data_collator=DataCollatorWithPadding(tokenizer),
    compute_metrics=compute_metrics,
)
trainer.train()
metrics = trainer.evaluate()
print(f"DEV_METRIC micro_f1={metrics['eval_micro_f1']:.4f} pred_std={float(np.std(LAST['preds'])):.4f}")
