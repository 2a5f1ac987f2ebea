"""Tiny, real training pieces shared by the rule tests.

Every rule test trains for real (a few dozen steps at most) inside
``with defib.watch(...) as w`` and reads ``w.diagnosis``. The pieces here are
the models and data; the training loops stay in the test files, because the
line a finding's ``where`` must point at (the loss call, the DataLoader, the
optimizer's ``lr=``) has to be in the test's own source. That line carries a
trailing ``# planted`` comment, and :func:`assert_where` finds it there.

- :class:`BertRegressor` / :class:`BertClassifier`: the tiny BERT checkpoint
  (``tiny_model_dir``) plus a linear head on [CLS]: for rules about encoders,
  pooling, masks and tokenizers.
- :class:`BagOfWords`: ``nn.Embedding`` + mean + ``nn.Linear`` on token ids,
  and :func:`word_data`, whose target is learnable from the ids: for rules
  about the loss and the optimizer (a step takes well under a millisecond).
- :func:`sentences`: short synthetic sentences whose score (positive minus
  negative words) a tiny BERT learns in a few dozen steps.
"""

from __future__ import annotations

import functools
import inspect
import os
import random
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

import defib
from defib.diagnosis import Diagnosis
from defib.rules.base import Finding

PLANTED = "# planted"
POS, NEG = ["good", "great", "fine"], ["bad", "awful", "poor"]
FILL = ["the", "movie", "was", "a", "plot", "and", "it"]


# ---------------------------------------------------------------- watching
def watch(*args: Any, **kwargs: Any) -> defib.watch:
    """``defib.watch`` without the stderr announcement (the tests read the diagnosis)."""
    return defib.watch(*args, announce=None, **kwargs)


def find(d: Diagnosis, code: str) -> Finding | None:
    """The finding of rule ``code`` in a diagnosis, or None."""
    return next((f for f in d.findings if f.code == code), None)


def planted_line(obj: Any) -> tuple[str, int]:
    """(file, line) of the one line in ``obj``'s source that ends with ``# planted``."""
    lines, start = inspect.getsourcelines(obj)
    hits = [start + i for i, line in enumerate(lines) if line.rstrip().endswith(PLANTED)]
    if len(hits) != 1:
        raise ValueError(f"{obj!r} must have exactly one line ending with {PLANTED!r}, found {len(hits)}")
    return inspect.getsourcefile(obj), hits[0]


def assert_where(f: Finding, obj: Any) -> None:
    """The finding points at the ``# planted`` line of ``obj`` (a test function or class)."""
    file, line = planted_line(obj)
    assert f.where is not None, f"{f.code} has no where"
    assert Path(os.path.abspath(f.where.file)).resolve() == Path(file).resolve(), f.where
    assert f.where.line == line, f"{f.code} points at line {f.where.line} ({f.where.code!r}), planted line is {line}"


# ---------------------------------------------------------------- tiny BERT
@functools.lru_cache(maxsize=4)
def tokenizer(model_dir: str):
    """MiniLM's real WordPiece tokenizer, loaded once per directory."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def sentences(n: int, seed: int = 0) -> list[tuple[str, float]]:
    """``n`` (sentence, score) rows; the score is #positive - #negative words (-4..4)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(FILL) for _ in range(rng.randint(3, 10))]
        score = 0
        for _ in range(rng.randint(0, 4)):
            good = rng.random() < 0.5
            words.insert(rng.randrange(len(words) + 1), rng.choice(POS if good else NEG))
            score += 1 if good else -1
        rows.append((" ".join(words), float(score)))
    return rows


class BertRegressor(nn.Module):
    """The tiny BERT checkpoint + a linear head on the last layer's [CLS]: (B, T) ids -> (B,) scores.

    ``config`` overrides go to ``from_pretrained`` (e.g. ``hidden_dropout_prob=0.0``).
    """

    def __init__(self, model_dir: str | Path, n_out: int = 1, **config: Any):
        super().__init__()
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(str(model_dir), **config)
        self.head = nn.Linear(self.encoder.config.hidden_size, n_out)
        self.n_out = n_out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        out = self.head(h[:, 0])  # (B, n_out)
        return out.squeeze(-1) if self.n_out == 1 else out


def encode(model_dir: str | Path, rows: list[tuple[str, float]], **kwargs: Any) -> tuple[dict, torch.Tensor]:
    """Tokenize a batch of rows (padding=True, truncation to 32 unless overridden); (encoding, targets)."""
    opts = {"padding": True, "truncation": True, "max_length": 32, "return_tensors": "pt"}
    opts.update(kwargs)
    enc = tokenizer(str(model_dir))([t for t, _ in rows], **opts)
    return enc, torch.tensor([y for _, y in rows])


# ---------------------------------------------------------------- bag of words
class BagOfWords(nn.Module):
    """``nn.Embedding`` + mean over tokens + ``nn.Linear``: (B, T) ids -> (B, n_out)."""

    def __init__(self, vocab: int = 32, dim: int = 16, n_out: int = 1, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embeddings = nn.Embedding(vocab, dim)  # named as in BERT, so defib groups it as embeddings
        self.head = nn.Linear(dim, n_out)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embeddings(input_ids).mean(1))  # (B, T, D) -> (B, D) -> (B, n_out)


def sentence_loader(model_dir: str | Path, n: int = 1000, batch_size: int = 16):
    """A shuffled DataLoader of ``sentences(n)``: (tokenized batch, scores), padded per batch to at most 32 tokens."""
    from torch.utils.data import DataLoader

    tok = tokenizer(str(model_dir))

    def collate(batch):
        texts, ys = zip(*batch)
        return tok(list(texts), padding=True, truncation=True, max_length=32, return_tensors="pt"), torch.tensor(ys)

    return DataLoader(sentences(n), batch_size=batch_size, shuffle=True, collate_fn=collate)


def word_data(n: int, seed: int = 0, vocab: int = 32, length: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (n, length) and a learnable score: #ids below 8 minus #ids in 8..15, standardised-ish."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, length), generator=gen)
    score = (ids < 8).sum(1).float() - ((ids >= 8) & (ids < 16)).sum(1).float()  # (n,), mean 0, std ~1.7
    return ids, score


def batches(*tensors: torch.Tensor, size: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """Consecutive slices of equal-length tensors, in order (no shuffling)."""
    n = tensors[0].shape[0]
    for i in range(0, n - size + 1, size):
        yield tuple(t[i:i + size] for t in tensors)
