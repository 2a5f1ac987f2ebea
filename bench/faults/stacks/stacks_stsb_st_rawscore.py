"""Fine-tune the all-MiniLM-L6-v2 bi-encoder on STS-B with sentence-transformers.

Uses the DataLoader + loss fit loop (model.old_fit, the pre-Trainer API that
ships with sentence-transformers) and CosineSimilarityLoss, which regresses
cos(u, v) onto the gold similarity, so the gold scores are mapped to [0, 1].
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
from sentence_transformers import InputExample, SentenceTransformer, losses
from torch.utils.data import DataLoader

from defib.demos.data import load_stsb, model_path


def to_examples(rows):
    return [InputExample(texts=[a, b], label=s) for a, b, s in zip(rows.sentence1, rows.sentence2, rows.score)]


def evaluate(model, rows, n=400):
    emb1 = model.encode(rows.sentence1[:n], batch_size=64, convert_to_tensor=True)
    emb2 = model.encode(rows.sentence2[:n], batch_size=64, convert_to_tensor=True)
    cos = torch.nn.functional.cosine_similarity(emb1, emb2).cpu().numpy()
    gold = np.asarray(rows.score[:n]) / 5.0
    pearson = np.corrcoef(cos, gold)[0, 1] if cos.std() > 1e-6 else 0.0
    return pearson, cos.std()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    model = SentenceTransformer(model_path(), device="cpu")
    model.max_seq_length = 128

    train_examples = to_examples(load_stsb("train"))
    train_dataloader = DataLoader(train_examples, shuffle=True, batch_size=args.batch_size)
    train_loss = losses.CosineSimilarityLoss(model)

    model.old_fit(
        train_objectives=[(train_dataloader, train_loss)],
        epochs=1,
        steps_per_epoch=args.max_steps,
        warmup_steps=int(0.1 * args.max_steps),
        optimizer_params={"lr": 2e-5},
        show_progress_bar=False,
    )

    pearson, pred_std = evaluate(model, load_stsb("dev"))
    print(f"DEV_METRIC pearson={pearson:.4f} pred_std={pred_std:.4f}")


if __name__ == "__main__":
    main()
