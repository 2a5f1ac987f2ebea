"""STS-B cross-encoder with sentence_transformers.cross_encoder.

Both sentences are scored together by a CrossEncoder with one output; the
DataLoader + fit loop (old_fit) trains it with BCEWithLogitsLoss, so the gold
similarity is given as a soft target in [0, 1]. predict() applies the sigmoid.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
from sentence_transformers import InputExample
from sentence_transformers.cross_encoder import CrossEncoder
from torch.utils.data import DataLoader

from defib.demos.data import load_stsb, model_path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    args = parser.parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    train = load_stsb("train")
    examples = []
    for s1, s2, score in zip(train.sentence1, train.sentence2, train.score):
        examples.append(InputExample(texts=[s1, s2], label=score))
    random.shuffle(examples)
    examples = examples[: args.max_steps * args.batch_size]  # one pass of max_steps batches

    model = CrossEncoder(model_path(), num_labels=1, max_length=128, device="cpu")
    loader = DataLoader(examples, shuffle=True, batch_size=args.batch_size)
    model.old_fit(
        train_dataloader=loader,
        epochs=1,
        warmup_steps=int(0.1 * len(loader)),
        optimizer_params={"lr": args.lr},
        show_progress_bar=False,
    )

    dev = load_stsb("dev")
    pairs = list(zip(dev.sentence1[:400], dev.sentence2[:400]))
    scores = np.asarray(model.predict(pairs, batch_size=64, show_progress_bar=False), dtype=np.float64)
    gold = np.asarray(dev.score[:400])
    pearson = np.corrcoef(scores, gold)[0, 1] if scores.std() > 1e-6 else 0.0
    print(f"DEV_METRIC pearson={pearson:.4f} pred_std={scores.std():.4f}")


if __name__ == "__main__":
    main()
