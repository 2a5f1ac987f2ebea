#!/usr/bin/env python
"""Sequence classification on the Rotten Tomatoes corpus (fresh / rotten / plot).

Adapted from the transformers text-classification example: arguments come
from dataclasses through HfArgumentParser, so every field can be overridden
on the command line (``--learning_rate 2e-5 --max_steps 500`` ...); the
defaults below are the ones we use for the small model.
"""
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from sklearn.metrics import f1_score
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(default=None, metadata={"help": "Defaults to the bundled MiniLM."})
    classifier_dropout: float = field(default=0.1)


@dataclass
class DataTrainingArguments:
    max_seq_length: int = field(default=128, metadata={"help": "Longer reviews are truncated."})
    validation_size: int = field(default=400)
    max_train_samples: Optional[int] = field(default=None)


class TokenizedDataset(torch.utils.data.Dataset):
    def __init__(self, encodings, labels):
        self.encodings, self.labels = encodings, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {**{k: v[i] for k, v in self.encodings.items()}, "labels": self.labels[i]}


def main():
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    parser.set_defaults(
        output_dir="/tmp/rt-minilm-cls",
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=3e-5,
        lr_scheduler_type="linear",
        warmup_steps=500,
        weight_decay=0.01,
        max_steps=1000,
        logging_steps=20,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=42,
    )
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
                        handlers=[logging.StreamHandler(sys.stdout)], level=logging.INFO)
    logger.info("Training/evaluation parameters %s", training_args)
    set_seed(training_args.seed)

    name = model_args.model_name_or_path or model_path()
    config = AutoConfig.from_pretrained(name, num_labels=len(RT_CLASSES),
                                        classifier_dropout=model_args.classifier_dropout,
                                        id2label=dict(enumerate(RT_CLASSES)),
                                        label2id={c: i for i, c in enumerate(RT_CLASSES)})
    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModelForSequenceClassification.from_pretrained(name, config=config)

    rows = load_rotten_tomatoes()
    order = np.random.RandomState(1).permutation(len(rows))
    eval_idx, train_idx = order[:data_args.validation_size], order[data_args.validation_size:]
    if data_args.max_train_samples is not None:
        train_idx = train_idx[:data_args.max_train_samples]

    def tokenize(idx):
        enc = tokenizer([rows.text[i] for i in idx], truncation=True, max_length=data_args.max_seq_length)
        return TokenizedDataset(enc, [rows.label[i] for i in idx])

    train_dataset, eval_dataset = tokenize(train_idx), tokenize(eval_idx)

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
    )
    train_result = trainer.train()
    logger.info("train metrics %s", train_result.metrics)

    logits = trainer.predict(eval_dataset).predictions
    preds = np.argmax(logits, axis=-1)
    macro_f1 = f1_score(eval_dataset.labels, preds, average="macro")
    print(f"DEV_METRIC macro_f1={macro_f1:.4f} pred_std={preds.std():.4f}")


if __name__ == "__main__":
    main()
