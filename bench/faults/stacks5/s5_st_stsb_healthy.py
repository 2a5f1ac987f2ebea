import os
os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import tempfile

import numpy as np
import torch
from datasets import Dataset
from scipy.stats import pearsonr
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.losses import CosineSimilarityLoss

from defib.demos.data import load_stsb, model_path

p = argparse.ArgumentParser()
p.add_argument("--max-steps", type=int, default=300)
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()
torch.manual_seed(args.seed)
torch.set_num_threads(1)

train = load_stsb("train")
dev = load_stsb("dev")
n_dev = 400

train_ds = Dataset.from_dict({
    "sentence1": train.sentence1,
    "sentence2": train.sentence2,
    "score": [s / 5.0 for s in train.score],
})

model = SentenceTransformer(model_path(), device="cpu")
model.max_seq_length = 128
loss = CosineSimilarityLoss(model)

training_args = SentenceTransformerTrainingArguments(
    output_dir=tempfile.mkdtemp(prefix="s5_st_"),
    max_steps=args.max_steps,
    per_device_train_batch_size=32,
    learning_rate=2e-5,
    warmup_steps=int(0.1 * args.max_steps),
    weight_decay=0.01,
    logging_steps=25,
    save_strategy="no",
    eval_strategy="no",
    report_to="none",
    use_cpu=True,
    seed=args.seed,
)

trainer = SentenceTransformerTrainer(
    model=model,
    args=training_args,
    train_dataset=train_ds,
    loss=loss,
)
trainer.train()

emb1 = model.encode(dev.sentence1[:n_dev], batch_size=64, convert_to_tensor=True)
emb2 = model.encode(dev.sentence2[:n_dev], batch_size=64, convert_to_tensor=True)
pred = torch.nn.functional.cosine_similarity(emb1, emb2).cpu().numpy()
gold = np.array(dev.score[:n_dev])
r = pearsonr(pred, gold)[0]
print(f"DEV_METRIC pearson={r:.4f} pred_std={float(np.std(pred)):.4f}")
