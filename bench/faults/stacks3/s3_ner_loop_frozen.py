"""WNUT-16 NER with a token-classification head, trained with a plain PyTorch loop.

Word-level BIO tags are put on the first word piece of every word; the other
pieces, [CLS]/[SEP] and padding get -100 so the loss skips them. Dev score is
entity-level micro F1 (exact span + type), computed by hand.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import random

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

from defib.demos.data import model_path, wnut16_conll


def read_conll(path):
    sents, cur = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                if cur:
                    sents.append(cur)
                    cur = []
                continue
            tok, tag = line.rstrip("\n").split("\t")
            cur.append((tok, tag))
    if cur:
        sents.append(cur)
    return sents


def encode(tokenizer, sents, tag2id, max_len=64):
    feats = []
    for sent in sents:
        words = [w for w, _ in sent]
        tags = [tag2id[t] for _, t in sent]
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_len)
        labels, prev = [], None
        for wid in enc.word_ids():
            if wid is None or wid == prev:
                labels.append(-100)
            else:
                labels.append(tags[wid])
            prev = wid
        word_ids = enc.word_ids()
        first = [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
        feats.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels,
                      "first": first, "tags": [t for _, t in sent][:len(first)]})
    return feats


def make_collate(pad_id, label_pad=-100):
    def collate(batch):
        width = max(len(f["input_ids"]) for f in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), label_pad, dtype=torch.long)
        for i, f in enumerate(batch):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            mask[i, :n] = torch.tensor(f["attention_mask"])
            labels[i, :n] = torch.tensor(f["labels"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return collate


def spans(tags):
    out, start, kind = set(), None, None
    for i, t in enumerate(list(tags) + ["O"]):
        if t == "O" or t.startswith("B-") or (t.startswith("I-") and t[2:] != kind):
            if start is not None:
                out.add((start, i, kind))
                start, kind = None, None
            if t != "O":
                start, kind = i, t[2:]
    return out


@torch.no_grad()
def evaluate(model, feats, id2tag, collate, o_id):
    model.eval()
    tp = n_pred = n_gold = 0
    p_ent = []
    for i in range(0, len(feats), 64):
        chunk = feats[i:i + 64]
        batch = collate(chunk)
        probs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.softmax(-1)
        for row_p, f in zip(probs, chunk):
            word_p = row_p[f["first"]]
            gold = f["tags"]
            pred = [id2tag[int(x)] for x in word_p.argmax(-1)]
            p_ent.extend((1.0 - word_p[:, o_id]).tolist())
            g, p = spans(gold), spans(pred)
            tp += len(g & p)
            n_pred += len(p)
            n_gold += len(g)
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_gold if n_gold else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return f1, float(np.std(p_ent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    sents = read_conll(wnut16_conll())
    random.Random(0).shuffle(sents)
    dev_sents, train_sents = sents[:400], sents[400:]
    tag_list = sorted({t for s in sents for _, t in s})
    tag2id = {t: i for i, t in enumerate(tag_list)}
    id2tag = {i: t for t, i in tag2id.items()}

    tokenizer = AutoTokenizer.from_pretrained(model_path())
    model = AutoModelForTokenClassification.from_pretrained(
        model_path(), num_labels=len(tag_list), id2label=id2tag, label2id=tag2id)

    for p in model.bert.parameters():
        p.requires_grad = False  # CPU only: train the tagger head, keep the encoder as is
    train_feats = encode(tokenizer, train_sents, tag2id)
    dev_feats = encode(tokenizer, dev_sents, tag2id)
    collate = make_collate(tokenizer.pad_token_id)
    loader = DataLoader(train_feats, batch_size=args.batch_size, shuffle=True, collate_fn=collate)

    num_epochs = 3
    total_steps = min(args.max_steps, num_epochs * len(loader))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * total_steps), total_steps)

    step = 0
    model.train()
    for epoch in range(num_epochs):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step % 25 == 0:
                print(f"epoch {epoch} step {step} loss {loss.item():.4f}")
            if step >= total_steps:
                break
        if step >= total_steps:
            break

    f1, pred_std = evaluate(model, dev_feats, id2tag, collate, tag2id["O"])
    print(f"DEV_METRIC entity_f1={f1:.4f} pred_std={pred_std:.4f}")


if __name__ == "__main__":
    main()
