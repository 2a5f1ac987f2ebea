"""Review-type classifier (fresh / rotten / plot) with a mean-pooled MiniLM encoder."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.lr_scheduler import StepLR
from transformers import AutoModel, AutoTokenizer

from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, model_path

MAX_LEN = 96
NUM_CLASSES = len(RT_CLASSES)


class SentenceClassifier(nn.Module):
    def __init__(self, path, n_classes):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(path)
        dim = self.encoder.config.hidden_size
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(dim, n_classes)

    def forward(self, input_ids, attention_mask):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        emb = (h * m).sum(dim=1) / m.sum(dim=1)
        return self.fc(self.drop(emb))


def split_data(seed=1234):
    rows = load_rotten_tomatoes()
    perm = np.random.RandomState(seed).permutation(len(rows))
    pick = lambda idx: ([rows.text[i] for i in idx], [rows.label[i] for i in idx])
    train_idx = []
    for c, cap in enumerate((3700, 200, 100)):
        train_idx += [i for i in perm[600:] if rows.label[i] == c][:cap]
    return pick(train_idx), pick(perm[:600])


def iterate(texts, labels, tokenizer, batch_size, shuffle, gen=None):
    order = torch.randperm(len(texts), generator=gen).tolist() if shuffle else list(range(len(texts)))
    for start in range(0, len(order), batch_size):
        sel = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in sel], padding=True, truncation=True,
                        max_length=MAX_LEN, return_tensors="pt")
        yield enc["input_ids"], enc["attention_mask"], torch.tensor([labels[i] for i in sel])


def train(model, tokenizer, texts, labels, max_steps, seed):
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-5)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.8)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    step, epoch = 0, 0
    while step < max_steps:
        for input_ids, attention_mask, y in iterate(texts, labels, tokenizer, 16, True, gen):
            logits = model(input_ids, attention_mask)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            step += 1
            if step % 20 == 0:
                print(f"epoch {epoch} step {step} loss {loss.item():.4f} lr {scheduler.get_last_lr()[0]:.2e}")
            if step >= max_steps:
                return
        scheduler.step()
        epoch += 1


@torch.no_grad()
def predict(model, tokenizer, texts, labels):
    model.eval()
    preds = []
    for input_ids, attention_mask, _ in iterate(texts, labels, tokenizer, 64, False):
        preds.append(model(input_ids, attention_mask).argmax(dim=-1))
    return torch.cat(preds).numpy()


def macro_f1(pred, gold):
    f1 = []
    for c in range(NUM_CLASSES):
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    (train_x, train_y), (dev_x, dev_y) = split_data()
    tokenizer = AutoTokenizer.from_pretrained(model_path())
    model = SentenceClassifier(model_path(), NUM_CLASSES)

    train(model, tokenizer, train_x, train_y, args.max_steps, args.seed)
    pred = predict(model, tokenizer, dev_x, dev_y)
    print(f"DEV_METRIC macro_f1={macro_f1(pred, np.array(dev_y)):.4f} pred_std={pred.std():.4f}")


if __name__ == "__main__":
    main()
