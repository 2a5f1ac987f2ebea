"""STS-B cross-encoder with the sentence-transformers v4+ CrossEncoderTrainer.

The train pairs are shuffled up front (numpy permutation), put in a datasets.Dataset
(sentence1, sentence2, score/5) and trained with BinaryCrossEntropyLoss on one logit.
Dev metric: Spearman of CrossEncoder.predict (sigmoid) against the gold scores.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WANDB_DISABLED", "true")

import argparse
import tempfile

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

from defib.demos.data import load_stsb, model_path

N_DEV = 400


def spearman(x, y):
    rx = np.argsort(np.argsort(x))
    ry = np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def shuffled_pairs(rows, seed):
    order = np.random.default_rng(seed).permutation(len(rows))
    sentence1 = [rows.sentence1[i] for i in order]
    sentence2 = [rows.sentence2[i] for i in order]
    score = [rows.score[i] / 5.0 for i in order]
    return Dataset.from_dict({"sentence1": sentence1, "sentence2": sentence2, "score": score})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--lr", type=float, default=8e-5)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    model = CrossEncoder(model_path(), num_labels=1, max_length=128, device="cpu")
    train = shuffled_pairs(load_stsb("train"), args.seed)
    loss = BinaryCrossEntropyLoss(model)

    with tempfile.TemporaryDirectory() as tmp:
        targs = CrossEncoderTrainingArguments(
            output_dir=tmp,
            max_steps=args.max_steps,
            per_device_train_batch_size=16,
            learning_rate=args.lr,
            warmup_steps=0.1,
            lr_scheduler_type="linear",
            weight_decay=0.01,
            logging_steps=20,
            save_strategy="no",
            report_to="none",
            seed=args.seed,
            use_cpu=True,
            dataloader_num_workers=0,
        )
        CrossEncoderTrainer(model=model, args=targs, train_dataset=train, loss=loss).train()

    dev = load_stsb("dev")
    pairs = list(zip(dev.sentence1[:N_DEV], dev.sentence2[:N_DEV]))
    pred = np.asarray(model.predict(pairs, batch_size=64, show_progress_bar=False))
    rho = spearman(pred, np.asarray(dev.score[:N_DEV])) if pred.std() > 1e-6 else 0.0
    print(f"DEV_METRIC spearman={rho:.4f} pred_std={pred.std():.4f}")


if __name__ == "__main__":
    main()
