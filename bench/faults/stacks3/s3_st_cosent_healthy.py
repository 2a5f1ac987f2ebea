"""STS-B bi-encoder with the sentence-transformers v3+ trainer and CoSENTLoss.

datasets.Dataset with (sentence1, sentence2, score) columns -> SentenceTransformerTrainer.
Dev metric: Spearman of cos(u, v) against the gold scores.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WANDB_DISABLED", "true")

import argparse
import tempfile

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses

from defib.demos.data import load_stsb, model_path


def spearman(a, b):
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def build_dataset(rows):
    return Dataset.from_dict({
        "sentence1": list(rows.sentence1),
        "sentence2": list(rows.sentence2),
        "score": [s / 5.0 for s in rows.score],
    })


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    model = SentenceTransformer(model_path(), device="cpu")
    model.max_seq_length = 64

    train_dataset = build_dataset(load_stsb("train"))
    loss = losses.CoSENTLoss(model)

    with tempfile.TemporaryDirectory() as out_dir:
        training_args = SentenceTransformerTrainingArguments(
            output_dir=out_dir,
            max_steps=args.max_steps,
            per_device_train_batch_size=16,
            learning_rate=2e-5,
            warmup_steps=0.1,
            lr_scheduler_type="linear",
            weight_decay=0.01,
            logging_steps=25,
            save_strategy="no",
            report_to="none",
            seed=args.seed,
            use_cpu=True,
            dataloader_num_workers=0,
        )
        trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=train_dataset, loss=loss)
        trainer.train()

    dev = load_stsb("dev")
    n = 500
    e1 = model.encode(dev.sentence1[:n], batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    e2 = model.encode(dev.sentence2[:n], batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    cos = (e1 * e2).sum(axis=1)
    rho = spearman(cos, np.asarray(dev.score[:n])) if cos.std() > 1e-6 else 0.0
    print(f"DEV_METRIC spearman={rho:.4f} pred_std={cos.std():.4f}")


if __name__ == "__main__":
    main()
