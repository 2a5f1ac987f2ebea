"""Tiny models with planted faults, and a one-call probe, for the probe-stage rule tests.

``probe(model, model_dir, ...)`` runs :func:`defib.evidence.probes.run_probes`
(all probes, or those in ``only``) on synthetic rows and diagnoses the result
with the probe-stage rules: (signals, diagnosis).
"""

from __future__ import annotations

import random
from typing import Any

import torch
from helpers import FILL, NEG, POS, BertRegressor, sentences, tokenizer

from defib.diagnosis import Diagnosis, diagnose
from defib.evidence.probes import Budget, run_probes
from defib.signals.run import Signals
from defib.signals.probe import ProbeSignals

ROWS = sentences(64, seed=1)
# the label-permutation control on MeanEmbedding: more rows and steps than the default, at the lr that model needs
PERMUTATION_BUDGET = Budget(max_rows=128, batch_size=16, permutation_steps=40, overfit_steps=80, lr_bounds=(5e-2, 5e-2))


def word_rows(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """Classification rows whose label is decided by one word: 1 with a positive word, 0 with a negative one."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.random() < 0.5
        words = [rng.choice(FILL) for _ in range(rng.randint(3, 8))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(POS if label else NEG))
        out.append((" ".join(words), int(label)))
    return out


def shuffled_labels(rows: list[tuple[str, Any]], seed: int = 0) -> list[tuple[str, Any]]:
    labels = [y for _, y in rows]
    random.Random(seed).shuffle(labels)
    return [(t, y) for (t, _), y in zip(rows, labels)]


def probe(model: torch.nn.Module, model_dir, rows: list[tuple[str, Any]] = ROWS, *,
          only: tuple[str, ...] | None = None, **kwargs: Any) -> tuple[ProbeSignals, Diagnosis]:
    sig = run_probes(model, tokenizer(str(model_dir)), [t for t, _ in rows], labels=[y for _, y in rows],
                     only=only, **kwargs)
    return sig, diagnose(Signals(task=sig.task, probe=sig), stage="probe")


class NoMask(BertRegressor):
    """Takes the attention mask and drops it."""

    def forward(self, input_ids, attention_mask=None):
        h = self.encoder(input_ids=input_ids).last_hidden_state  # (B, T, H)
        return self.head(h[:, 0]).squeeze(-1)


class NoMaskArg(BertRegressor):
    """Never takes an attention mask at all."""

    def forward(self, input_ids):
        return self.head(self.encoder(input_ids=input_ids).last_hidden_state[:, 0]).squeeze(-1)


class Detached(BertRegressor):
    """The [CLS] vector is detached before the head."""

    def forward(self, input_ids, attention_mask=None):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(h[:, 0].detach()).squeeze(-1)


class EmbeddingCls(BertRegressor):
    """Pools the embedding layer's [CLS] vector: the same for every input."""

    def forward(self, input_ids, attention_mask=None):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return self.head(out.hidden_states[0][:, 0]).squeeze(-1)


class MeanEmbedding(torch.nn.Module):
    """Token embeddings averaged over the real tokens, then a linear head: learns word-presence tasks in a few steps.

    For the label-permutation control, whose known answer must not hinge on
    how well a tiny, unpretrained BERT happens to generalise from a few dozen rows.
    """

    def __init__(self, vocab: int = 30522, dim: int = 16, n_out: int = 2):
        super().__init__()
        self.embeddings = torch.nn.Embedding(vocab, dim)
        self.head = torch.nn.Linear(dim, n_out)

    def forward(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).float()  # (B, T, 1)
        return self.head((self.embeddings(input_ids) * m).sum(1) / m.sum(1))  # (B, n_out)
