"""STS-B bi-encoder built module by module with sentence-transformers.

Transformer (hidden states of every layer exposed) -> a small pooling module
that takes the [CLS] vector of a chosen layer -> Normalize. Trained with
CosineSimilarityLoss on scores mapped to [0, 1] through model.old_fit.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
from sentence_transformers import InputExample, SentenceTransformer, losses, models
from torch.utils.data import DataLoader

from defib.demos.data import load_stsb, model_path

POOL_LAYER = 0  # which hidden layer the [CLS] vector is read from


class LayerCLSPooling(torch.nn.Module):
    """[CLS] token of one hidden layer as the sentence embedding."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, features):
        hidden = features["all_layer_embeddings"][self.layer]
        features["sentence_embedding"] = hidden[:, 0]
        return features


def build_model():
    word = models.Transformer(model_path(), max_seq_length=128, config_kwargs={"output_hidden_states": True})
    return SentenceTransformer(modules=[word, LayerCLSPooling(POOL_LAYER), models.Normalize()], device="cpu")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    model = build_model()
    rows = load_stsb("train")
    examples = [InputExample(texts=[a, b], label=s / 5.0) for a, b, s in zip(rows.sentence1, rows.sentence2, rows.score)]
    loader = DataLoader(examples, shuffle=True, batch_size=16)
    model.old_fit(
        train_objectives=[(loader, losses.CosineSimilarityLoss(model))],
        epochs=1,
        steps_per_epoch=args.max_steps,
        warmup_steps=int(0.1 * args.max_steps),
        optimizer_params={"lr": 3e-5},
        show_progress_bar=False,
    )

    dev = load_stsb("dev")
    u = model.encode(dev.sentence1[:400], batch_size=64, convert_to_tensor=True)
    v = model.encode(dev.sentence2[:400], batch_size=64, convert_to_tensor=True)
    cos = (u * v).sum(-1).cpu().numpy()  # embeddings are normalized
    gold = np.asarray(dev.score[:400])
    pearson = np.corrcoef(cos, gold)[0, 1] if cos.std() > 1e-6 else 0.0
    print(f"DEV_METRIC pearson={pearson:.4f} pred_std={cos.std():.4f}")


if __name__ == "__main__":
    main()
