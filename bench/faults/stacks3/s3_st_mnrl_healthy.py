#!/usr/bin/env python
# Contrastive fine-tuning of all-MiniLM-L6-v2 on the near-paraphrase pairs of STS-B
# (gold score >= 4 -> (anchor, positive)), in-batch negatives via
# MultipleNegativesRankingLoss, SentenceTransformerTrainer with the no-duplicates
# batch sampler.  Judged on the full STS-B dev set (Pearson of the cosine).
import os
os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import tempfile

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses
from sentence_transformers import SentenceTransformerTrainingArguments as Args
from sentence_transformers.training_args import BatchSamplers

from defib.demos.data import load_stsb, model_path

MIN_SCORE = 4.0


def paraphrase_pairs():
    sts = load_stsb("train")
    anchors, positives = [], []
    for a, b, s in zip(sts.sentence1, sts.sentence2, sts.score):
        if s >= MIN_SCORE:
            anchors.append(a)
            positives.append(b)
    return Dataset.from_dict({"anchor": anchors, "positive": positives})


def dev_pearson(st_model):
    dev = load_stsb("dev")
    n = 500
    u = st_model.encode(dev.sentence1[:n], batch_size=64, convert_to_tensor=True)
    v = st_model.encode(dev.sentence2[:n], batch_size=64, convert_to_tensor=True)
    sims = torch.nn.functional.cosine_similarity(u, v).numpy()
    if sims.std() < 1e-6:
        return 0.0, float(sims.std())
    return float(np.corrcoef(sims, np.asarray(dev.score[:n]))[0, 1]), float(sims.std())


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    cfg = p.parse_args()

    st_model = SentenceTransformer(model_path(), device="cpu")
    st_model.max_seq_length = 64
    pairs = paraphrase_pairs()
    print(pairs)

    train_loss = losses.MultipleNegativesRankingLoss(st_model)

    tmp = tempfile.mkdtemp(prefix="mnrl_")
    targs = Args(
        output_dir=tmp,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=3e-5,
        warmup_steps=0.1,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        logging_steps=20,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=1,
    )
    SentenceTransformerTrainer(model=st_model, args=targs, train_dataset=pairs, loss=train_loss).train()

    r, spread = dev_pearson(st_model)
    print(f"DEV_METRIC pearson={r:.4f} pred_std={spread:.4f}")
