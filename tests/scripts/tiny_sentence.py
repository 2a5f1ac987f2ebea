"""A small, real sentence-transformers fine-tuning script for tests: the Trainer on sentence pairs.

A tiny SentenceTransformer (the tiny BERT given by ``--model``, mean pooling) or CrossEncoder trained
by the library's own trainer on word-overlap pairs: the label is the share of words the second text
keeps from the first, which mean pooling learns in a few dozen steps. Nothing here knows about defib:
``defib run`` watches it unchanged, and the tests import :func:`trainer` to add the callback.
``--scale 5`` plants STS-style 0-5 labels into ``CosineSimilarityLoss``.
"""

from __future__ import annotations

import argparse
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from datasets import Dataset

WORDS = "red blue green cat dog bird house tree river stone car road city king queen music night sun moon rain".split()


def pairs(n: int, scale: float = 1.0, seed: int = 0) -> dict[str, list]:
    """Columns of ``n`` rows: a text, the text with some words replaced, ``scale`` x the share of words kept."""
    rng = random.Random(seed)
    cols: dict[str, list] = {"sentence1": [], "sentence2": [], "score": []}
    for _ in range(n):
        a = [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]
        p = rng.random()
        b = [w if rng.random() > p else rng.choice(WORDS) for w in a]
        cols["sentence1"].append(" ".join(a))
        cols["sentence2"].append(" ".join(b))
        cols["score"].append(scale * sum(x == y for x, y in zip(a, b)) / len(a))
    return cols


def trainer(model_dir: str, out_dir: str, *, kind: str = "bi", scale: float = 1.0, steps: int = 60,
            lr: float = 1e-3, callbacks: list | None = None):
    """The trainer a user would build: ``kind`` "bi" (CosineSimilarityLoss) or "cross" (BinaryCrossEntropyLoss)."""
    torch.manual_seed(0)
    data = pairs(16 * steps, scale)
    common = dict(output_dir=out_dir, per_device_train_batch_size=16, max_steps=steps, learning_rate=lr,
                  warmup_steps=5, report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
                  use_cpu=True, seed=0, data_seed=0)
    if kind == "cross":
        from sentence_transformers.cross_encoder import (CrossEncoder, CrossEncoderTrainer,
                                                         CrossEncoderTrainingArguments)
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

        model = CrossEncoder(model_dir, num_labels=1, max_length=48, device="cpu")
        data["score"] = [float(y > 0.5) for y in data["score"]]
        loss = BinaryCrossEntropyLoss(model)
        return CrossEncoderTrainer(model=model, args=CrossEncoderTrainingArguments(**common),
                                   train_dataset=Dataset.from_dict(data), loss=loss, callbacks=callbacks)
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.modules import Pooling

    encoder = Transformer(model_dir, max_seq_length=32)
    model = SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), "mean")], device="cpu")
    # --scale 5 gives it labels its cosine cannot reach
    loss = losses.CosineSimilarityLoss(model)  # planted
    return SentenceTransformerTrainer(model=model, args=SentenceTransformerTrainingArguments(**common),
                                      train_dataset=Dataset.from_dict(data), loss=loss, callbacks=callbacks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", default="st_out")
    parser.add_argument("--kind", choices=["bi", "cross"], default="bi")
    parser.add_argument("--scale", type=float, default=1.0, help="labels' scale (5: STS-B's raw 0-5 scores)")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    trainer(args.model, args.out, kind=args.kind, scale=args.scale, steps=args.steps).train()
