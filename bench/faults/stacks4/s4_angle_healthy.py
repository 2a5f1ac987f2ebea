"""STS-B bi-encoder: SentenceTransformerTrainer with AnglELoss (CoSENT on angle differences).

A SentenceTransformer built from its two modules (Transformer + mean Pooling), trained on
(sentence1, sentence2, score/5) rows; the dev pairs are encoded in one call per side.
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
from scipy.stats import spearmanr
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.losses import AnglELoss
from sentence_transformers.models import Pooling, Transformer

from defib.demos.data import load_stsb, model_path

DEV_PAIRS = 400


def make_model(max_len):
    word = Transformer(model_path(), max_seq_length=max_len)
    pool = Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[word, pool], device="cpu")


def to_dataset(rows):
    return Dataset.from_dict({
        "sentence1": rows.sentence1,
        "sentence2": rows.sentence2,
        "score": [x / 5.0 for x in rows.score],
    })


def evaluate(model, rows):
    left = rows.sentence1[:DEV_PAIRS]
    right = rows.sentence2[:DEV_PAIRS]
    u = model.encode(left, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    v = model.encode(right, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    cos = np.sum(u * v, axis=1)
    gold = np.asarray(rows.score[:DEV_PAIRS])
    rho = spearmanr(cos, gold).correlation if cos.std() > 1e-6 else 0.0
    return float(np.nan_to_num(rho)), float(cos.std())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    model = make_model(64)
    loss = AnglELoss(model)
    with tempfile.TemporaryDirectory() as tmp:
        targs = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            max_steps=args.max_steps,
            per_device_train_batch_size=16,
            learning_rate=3e-5,
            warmup_steps=0.1,
            weight_decay=0.01,
            logging_steps=20,
            save_strategy="no",
            report_to="none",
            seed=args.seed,
            use_cpu=True,
            dataloader_num_workers=0,
        )
        trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=to_dataset(load_stsb("train")), loss=loss)
        trainer.train()

    rho, spread = evaluate(model, load_stsb("dev"))
    print(f"DEV_METRIC spearman={rho:.4f} pred_std={spread:.4f}")


if __name__ == "__main__":
    main()
