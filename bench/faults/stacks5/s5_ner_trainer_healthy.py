import os
os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random
import tempfile

import numpy as np
import torch
from datasets import Dataset
from seqeval.metrics import f1_score
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
    set_seed,
)

from defib.demos.data import model_path, wnut16_conll


def read_conll(path):
    tweets, words, tags = [], [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip():
                if words:
                    tweets.append((words, tags))
                    words, tags = [], []
                continue
            tok, tag = line.split("\t")
            words.append(tok)
            tags.append(tag)
    if words:
        tweets.append((words, tags))
    return tweets


parser = argparse.ArgumentParser()
parser.add_argument("--max-steps", type=int, default=300)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
set_seed(args.seed)
torch.set_num_threads(1)

tweets = read_conll(wnut16_conll())
random.Random(13).shuffle(tweets)
train_rows, dev_rows = tweets[:-300], tweets[-300:]

label_list = sorted({t for _, tags in tweets for t in tags})
label2id = {t: i for i, t in enumerate(label_list)}
id2label = {i: t for t, i in label2id.items()}

tokenizer = AutoTokenizer.from_pretrained(model_path())


def tokenize_and_align(batch):
    enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=128)
    all_labels = []
    for i, tags in enumerate(batch["ner_tags"]):
        word_ids = enc.word_ids(batch_index=i)
        prev = None
        ids = []
        for w in word_ids:
            if w is None or w == prev:
                ids.append(-100)
            else:
                ids.append(label2id[tags[w]])
            prev = w
        all_labels.append(ids)
    enc["labels"] = all_labels
    return enc


def to_dataset(rows):
    ds = Dataset.from_dict({"tokens": [w for w, _ in rows], "ner_tags": [t for _, t in rows]})
    return ds.map(tokenize_and_align, batched=True, remove_columns=["tokens", "ner_tags"])


train_ds = to_dataset(train_rows)
dev_ds = to_dataset(dev_rows)

model = AutoModelForTokenClassification.from_pretrained(
    model_path(), num_labels=len(label_list), id2label=id2label, label2id=label2id
)

out_dir = tempfile.mkdtemp(prefix="s5_ner_trainer_")
training_args = TrainingArguments(
    output_dir=out_dir,
    max_steps=args.max_steps,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=64,
    learning_rate=3e-4,
    weight_decay=0.01,
    warmup_steps=10,
    lr_scheduler_type="linear",
    logging_steps=25,
    save_strategy="no",
    eval_strategy="no",
    report_to="none",
    use_cpu=True,
    seed=args.seed,
    dataloader_num_workers=0,
)

trainer = Trainer(
    model=model,
    args=training_args,
    train_dataset=train_ds,
    data_collator=DataCollatorForTokenClassification(tokenizer),
    processing_class=tokenizer,
)
trainer.train()

out = trainer.predict(dev_ds)
pred_ids = np.argmax(out.predictions, axis=-1)
y_true, y_pred, flat = [], [], []
for p_row, l_row in zip(pred_ids, out.label_ids):
    keep = l_row != -100
    y_true.append([id2label[int(x)] for x in l_row[keep]])
    y_pred.append([id2label[int(x)] for x in p_row[keep]])
    flat.extend(int(x) for x in p_row[keep])

f1 = f1_score(y_true, y_pred)
print(f"DEV_METRIC entity_f1={f1:.4f} pred_std={float(np.std(flat)):.4f}")
