"""A bounded sample of real training rows, as the encoder received them, with the targets the loss paired them with.

A run whose predictions go flat with no cause in sight may be learning from
labels that do not belong to their texts, which nothing inside the run can
tell from any other failure to learn. The end-of-run label control
(:mod:`defib.evidence.probes.label_control`) can, given real rows; this part
keeps them: from the first training steps until ``MAX_ROWS`` are kept (the
copies are made on the tensors' device and read on the host at the next
flush, never in between: the watcher's cost rule), and only where the
pairing is beyond doubt: exactly one training call of an encoder on token
ids since the previous loss call, whose batch is as long as the training loss's targets,
one target per row (a regression's score or a class id); or exactly two (a
bi-encoder: one per text of a pair) of that length before a regression loss
that gives one score a pair (a cosine against the pair's label:
``CosineSimilarityLoss``, CoSENT, AnglE, a plain loop's ``mse_loss(cos(u, v),
y)``), kept as pairs with the run's own score for each. Other counts, a
token-level or multilabel loss, a loss with no labels (in-batch negatives): no
rows, and after ``GIVE_UP_STEPS`` optimizer steps without one paired row, no
more copies either (the pairing will not change mid-run).

Memory: at most ``MAX_ROWS`` rows (pairs: twice the texts) of at most
``MAX_TOKENS`` token ids each, three int64 tensors a text (ids, mask, token
types): 256 x 2 x 128 x 3 x 8 bytes, under 2 MB on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import math

import numpy as np
import torch
from torch import nn

from defib.evidence import params as P
from defib.evidence.stats import pearson, ranks
from defib.evidence.watch.guard import Part
from defib.evidence.watch.vocab import checkpoint_dir

MAX_ROWS = 256    # rows kept: the label control reads them all
MAX_TOKENS = 128  # token ids kept per row: enough for a short training run to tell labels apart by text
GIVE_UP_STEPS = 8  # optimizer steps with no row paired, after which no encoder batch is copied any more


@dataclass
class Row:
    """One training row as the encoder received it (trailing padding dropped), and its target."""

    input_ids: torch.Tensor               # (T,) int64, CPU
    attention_mask: torch.Tensor | None   # (T,) or None when the encoder got no mask
    token_type_ids: torch.Tensor | None   # (T,) or None when it got none
    target: float                         # a regression score, or a class id as a float
    # a bi-encoder's pair: the second text (its own target the pair's), and the run's score for the pair then
    second: Row | None = None
    score: float | None = None


class RowSample(Part):
    """The rows kept so far (``rows``), the task their targets belong to, and the encoder call waiting for its loss."""

    def __init__(self, watcher: Any):
        super().__init__(watcher)
        self.rows: list[Row] = []
        self.task: str | None = None   # regression | classification | pairs, from the first rows kept
        self._pending: list[tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]] = []
        self.checkpoint: str | None = None        # the folder the encoder was loaded from, if on disk
        self.encoder_params: int | None = None    # its parameter count (None: no encoder call kept yet)
        self._promised = 0  # rows of batches paired with their targets but not read yet (the next flush reads them)
        self._paired = False  # some batch was paired with its targets (rows kept, or promised to the next flush)
        self._steps = 0       # optimizer steps seen while rows were wanted
        self._last_source: tuple | None = None  # the last pending batch's token ids (address, shape)

    def wanted(self) -> bool:
        """More rows are wanted: the sample is not full yet (counting those waiting for the next flush), and the
        run's batches can be paired with targets at all (a bi-encoder's, a tagger's cannot: stop copying them)."""
        return len(self.rows) + self._promised < MAX_ROWS and (self._paired or self._steps < GIVE_UP_STEPS)

    def encoder_call(self, encoder: nn.Module, args: tuple, kwargs: dict, ids: torch.Tensor | None,
                     mask: torch.Tensor | None) -> None:
        """A training call of an encoder while rows are wanted (the watcher's guarded forward handler calls this)."""
        if len(self.rows) >= MAX_ROWS or ids is None:
            return  # no token ids: a submodule of an encoder (BertEncoder takes the embeddings' output)
        source = (ids.data_ptr(), tuple(ids.shape))
        if self._pending and source == self._last_source:
            return  # the same batch again, one call up: a sentence-transformers model around its hooked encoder
        self._last_source = source
        if self.encoder_params is None:
            # read now: the watcher holds its models weakly, and a script's model is gone by the report at exit
            self.checkpoint = checkpoint_dir(P.find_config(encoder))
            self.encoder_params = sum(p.numel() for p in encoder.parameters())
        if mask is not None and mask.shape != ids.shape:
            self._pending.append((None, None, None))  # counted: it makes the pairing ambiguous
            return
        types = _token_types(args, kwargs)
        if types is not None and types.shape != ids.shape:
            types = None
        self._pending.append((ids.detach().clone(), None if mask is None else mask.detach().clone(),
                              None if types is None else types.detach().clone()))

    def loss_targets(self, family: str, per_token: bool, input: torch.Tensor, target: torch.Tensor) -> None:
        """The training loss was called: pair its targets with the encoder batches since the last call, if one
        (a row per target), or two of a regression's one score a pair (a bi-encoder: a pair per target)."""
        pending, self._pending = self._pending, []
        if len(pending) not in (1, 2) or not self.wanted():
            return
        ids, mask, types = pending[0]
        if (ids is None or per_token or target.ndim == 0 or target.shape[0] != ids.shape[0]
                or any(p[0] is None or p[0].shape[0] != ids.shape[0] for p in pending)):
            return
        n = ids.shape[0]
        one_each = input.numel() == n and target.numel() == n and target.is_floating_point()
        if len(pending) == 2:
            if family != "regression" or not one_each:
                return
            task = "pairs"
        elif family in ("regression", "multilabel") and one_each:
            task = "regression"  # BCE on one output per row: a score or a 0/1 label per row, read out as a number
        elif (family == "classification" and target.ndim == 1 and not target.is_floating_point()
              and input.ndim == 2 and input.shape[0] == n and input.shape[1] >= 2):
            task = "classification"
        else:
            return
        if self.task is not None and task != self.task:
            return
        self.task = task
        self._paired = True
        self._promised += n
        second = pending[1] if task == "pairs" else None
        scores = input.detach().clone().reshape(n) if task == "pairs" else None
        self.w.later(self._keep, pending[0], second, target.detach().clone().reshape(n), scores)

    def forget_pending(self) -> None:
        """An optimizer step ended: an encoder call no loss followed pairs with nothing."""
        self._pending = []
        self._steps += 1

    def scores_follow_labels(self) -> tuple[float, float] | None:
        """How far the run's own scores for the pairs kept follow their labels: (Spearman's rho, its one-sided
        p-value against no relation), or None without pairs or with one label for all.

        A bi-encoder has no new head: its first steps' scores are the pretrained model's read-out of each
        pair, so labels these follow belong to their texts. The p-value is the normal approximation of
        rho's law under independence (sd 1 / sqrt(n - 1)): the rows are hundreds.
        """
        pairs = [r for r in self.rows if r.score is not None]
        labels = np.array([r.target for r in pairs])
        if self.task != "pairs" or len(pairs) < 3 or np.ptp(labels) == 0:
            return None  # one label for all: nothing to follow (D104's constant labels)
        rho = pearson(ranks(np.array([r.score for r in pairs])), ranks(labels))
        z = rho * math.sqrt(len(pairs) - 1)
        return rho, 0.5 * math.erfc(z / math.sqrt(2))

    def _keep(self, first: tuple, second: tuple | None, y: torch.Tensor, scores: torch.Tensor | None) -> None:
        self._promised -= y.shape[0]
        first = _on_host(first)
        second = None if second is None else _on_host(second)
        y = y.cpu()
        scores = None if scores is None else scores.float().cpu()
        for i in range(y.shape[0]):
            if len(self.rows) >= MAX_ROWS:
                return
            target = float(y[i])
            if self.task == "classification" and target < 0:
                continue  # an ignored row (ignore_index): no label to pair
            row = _row(first, i, target)
            other = None if second is None else _row(second, i, target)
            if row is None or (second is not None and other is None):
                continue
            row.second = other
            row.score = None if scores is None else float(scores[i])
            self.rows.append(row)


def _on_host(batch: tuple) -> tuple:
    return tuple(None if t is None else t.cpu() for t in batch)


def _row(batch: tuple, i: int, target: float) -> Row | None:
    """Row ``i`` of an encoder batch on the host, trailing padding dropped; None when it holds no token."""
    ids, mask, types = batch
    length = ids.shape[1]
    if mask is not None:
        real = mask[i].nonzero()
        length = int(real[-1]) + 1 if real.numel() else 0
    length = min(length, MAX_TOKENS)
    if length == 0:
        return None
    return Row(input_ids=ids[i, :length].long().clone(),
               attention_mask=None if mask is None else mask[i, :length].long().clone(),
               token_type_ids=None if types is None else types[i, :length].long().clone(),
               target=target)



def _token_types(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """token_type_ids, by keyword or in a dict passed first (a tokenizer's BatchEncoding)."""
    src: dict = dict(kwargs) if isinstance(kwargs, Mapping) else {}
    if args and isinstance(args[0], Mapping):
        src.update(args[0])
    types = src.get("token_type_ids")
    return types if isinstance(types, torch.Tensor) and types.ndim == 2 else None
