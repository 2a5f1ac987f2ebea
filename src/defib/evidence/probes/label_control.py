"""The label control at the end of a watched run: do the run's labels go with its texts?

Labels reordered apart from their texts look, from inside a run, like any
other failure to learn. What tells them apart is whether the inputs carry
the labels at all. A pretrained encoder's features do carry what a text says,
so a held-out linear read-out of them predicts labels that belong clearly
better than the same labels shuffled, and labels that do not belong no
better (:mod:`defib.evidence.probes.linear_probe`). This runs that test once
when a watched run ends flatlined with no cause in sight, on the training
rows the run kept (:mod:`defib.evidence.watch.rows`), encoded by a fresh copy
of the encoder loaded from its checkpoint folder: the pretrained features,
not what the run made of them (a run can wreck its encoder).

A bi-encoder's rows are pairs (two texts, one score: evidence/watch/rows.py).
Both texts are encoded by the fresh copy and mean-pooled (a sentence
encoder's own pooling), and the read-out sees the symmetric features a pair
classifier reads, ``u * v`` and ``|u - v|`` of the unit vectors (the cosine is
their first half's sum, so the read-out can find it). Its positive control is
the pair's lexical overlap (the share of word pieces the two texts share),
which any informative pair features show.

Why not ``defib probe``'s permutation control (train a copy on real and on
shuffled labels)? Measured on MiniLM and Rotten Tomatoes rows, it took 345 s
of CPU and its real and shuffled runs ended close on labels that did belong
(held-out loss 0.948 against 0.982, constant 0.937); the read-out needs one
forward pass over the rows (seconds) and separates the two by several
standard deviations of the shuffles.

It never touches the user's model, optimizer or random streams: a fresh
copy, on the CPU, in eval mode, no gradients, its own random generator. It
runs after training, so the run's losses are what they would have been
without it. Bounded: skipped for a model over ``MAX_PARAMS`` parameters,
stopped when its forward passes run past a wall-time budget.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable

import torch
import torch.nn.functional as F

from defib.evidence.probes.checkpoint import load_encoder
from defib.evidence.probes.data import ProbeInputError
from defib.evidence.probes.linear_probe import one_hot, probe_labels
from defib.evidence.watch.rows import Row
from defib.signals.run import LabelControl

MAX_PARAMS = 400_000_000  # a second copy in CPU memory for a few seconds: up to BERT-large's size
BUDGET_SECONDS = 120.0    # wall time the forward passes may take (MiniLM, 256 rows: about 5 s)
MIN_ROWS = 256            # STS-B pairs on MiniLM: 128 aligned rows can score like a shuffle (p 0.09), 256 cannot
BATCH = 32                # rows per forward pass
POWER_TOKENS = 8          # tokens whose presence makes the positive control's labels


class OutOfTime(Exception):
    """The forward passes ran past the control's wall-time budget."""


def run_label_control(rows: list[Row], task: str | None, checkpoint: str | None, n_params: int, *,
                      trigger: str = "flatline", seconds: float = BUDGET_SECONDS,
                      say: Callable[[str], None] = lambda _msg: None) -> LabelControl:
    """Probe a fresh copy's features of ``rows`` for their labels, and for labels read off the rows themselves
    (common tokens' presence; a pair's overlap); what it measured, or why not. ``trigger``: why it runs."""
    pairs = task == "pairs"
    control = LabelControl(rows=len(rows), checkpoint=checkpoint, trigger=trigger, pairs=pairs)
    why = _not_runnable(rows, task, checkpoint, n_params)
    if why or checkpoint is None:
        control.skipped = why
        return control
    why_now = ("the bi-encoder's own scores did not follow its labels" if trigger == "pair_scores"
               else "predictions flatlined with no cause seen")
    say(f"defib: {why_now}; checking that the labels go with their texts "
        f"(a linear read-out of {checkpoint}'s features for {len(rows)} training {'pairs' if pairs else 'rows'})")
    started = time.perf_counter()
    try:
        encoder = load_encoder(checkpoint)
        deadline = started + seconds
        features = _pair_features(encoder, rows, deadline) if pairs else _features(encoder, rows, deadline)
        targets = [r.target for r in rows]
        labels = one_hot([int(t) for t in targets]) if task == "classification" else torch.tensor(targets)
        control.labels = probe_labels(features, labels)
        marked = _overlap(rows) if pairs else _token_labels(rows)
        if marked is not None:
            control.power = probe_labels(features, marked)
    except ProbeInputError as exc:
        control.skipped = f"the control could not run: {exc}"
    except OutOfTime:
        control.skipped = f"the control's forward passes ran past their {seconds:.0f} s budget"
    control.seconds = round(time.perf_counter() - started, 2)
    return control


def _not_runnable(rows: list[Row], task: str | None, checkpoint: str | None, n_params: int) -> str | None:
    if checkpoint is None:
        return "the encoder was not loaded from a checkpoint folder on disk, so no fresh copy could be made"
    if task not in ("regression", "classification", "pairs"):
        return ("no training rows could be paired with their targets (one encoder call per loss call, one target "
                "a row; or a bi-encoder's two, one score a pair)")
    if len(rows) < MIN_ROWS:
        return f"only {len(rows)} training rows were kept with their targets; the control needs {MIN_ROWS}"
    if len({r.target for r in rows}) < 2:
        return f"the {len(rows)} training rows kept all hold the same label (rows in label order?)"
    if n_params > MAX_PARAMS:
        return f"the model has {n_params / 1e6:.0f}M parameters; the control copies at most {MAX_PARAMS // 10**6}M"
    return None


@torch.no_grad()
def _features(encoder: torch.nn.Module, rows: list[Row], deadline: float) -> torch.Tensor:
    """Each row's last-layer mean over its tokens and its first token's vector, side by side (rows x 2 hidden).

    Two poolings because either can carry what the other misses: a [CLS]-trained checkpoint keeps the
    sentence in its first token, a mean-pooled one (sentence-transformers) spreads it over all of them.
    """
    return torch.cat(_pooled(encoder, rows, deadline), dim=1)


@torch.no_grad()
def _pair_features(encoder: torch.nn.Module, rows: list[Row], deadline: float) -> torch.Tensor:
    """Each pair's ``u * v`` and ``|u - v|`` of its two texts' unit mean-pooled vectors (pairs x 2 hidden):
    symmetric in the two texts, as a bi-encoder's score is."""
    u = F.normalize(_pooled(encoder, rows, deadline)[0], dim=-1)
    v = F.normalize(_pooled(encoder, [r.second for r in rows], deadline)[0], dim=-1)
    return torch.cat([u * v, (u - v).abs()], dim=1)


@torch.no_grad()
def _pooled(encoder: torch.nn.Module, rows: list[Row], deadline: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's last-layer mean over its tokens, and its first token's vector (rows x hidden each)."""
    pad = getattr(encoder.config, "pad_token_id", None) or 0
    means, firsts = [], []
    for at in range(0, len(rows), BATCH):
        if time.perf_counter() > deadline:
            raise OutOfTime
        batch = _padded(rows[at:at + BATCH], pad)
        hidden = encoder(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        means.append((hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0))
        firsts.append(hidden[:, 0])
    return torch.cat(means), torch.cat(firsts)


def _padded(rows: list[Row], pad_id: int) -> dict[str, torch.Tensor]:
    """The rows as one right-padded batch: ids, a mask (1 on each row's tokens), token types where every row has them."""
    width = max(int(r.input_ids.shape[0]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    with_types = all(r.token_type_ids is not None for r in rows)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = int(r.input_ids.shape[0])
        ids[i, :n] = r.input_ids
        mask[i, :n] = r.attention_mask if r.attention_mask is not None else 1
        if with_types and r.token_type_ids is not None:
            types[i, :n] = r.token_type_ids
    batch = {"input_ids": ids, "attention_mask": mask}
    if with_types:
        batch["token_type_ids"] = types
    return batch


def _token_labels(rows: list[Row]) -> torch.Tensor | None:
    """Whether each row contains each of the ``POWER_TOKENS`` tokens closest to being in half of the rows
    (first and last token aside): rows x tokens, 0 or 1.

    Labels that belong to their texts by construction, for the positive control: features that cannot
    show even these from these rows cannot show whether the real labels belong. Several tokens, not one:
    a single frequent word's presence can be faint in pooled features (on 256 length-bucketed Rotten
    Tomatoes rows, "of" alone scored p = 0.015, the 8 together p = 0.005 at 37 shuffled sd). None when no
    token is in between a quarter and three quarters of the rows.
    """
    inside = [set(r.input_ids[1:-1].tolist()) for r in rows]
    counts = Counter(t for ids in inside for t in ids)
    half = len(rows) / 2
    near = sorted((kv for kv in counts.items() if len(rows) / 4 <= kv[1] <= 3 * len(rows) / 4),
                  key=lambda kv: (abs(kv[1] - half), kv[0]))[:POWER_TOKENS]
    if not near:
        return None
    return torch.tensor([[float(t in ids) for t, _ in near] for ids in inside])


def _overlap(rows: list[Row]) -> torch.Tensor | None:
    """Each pair's share of word pieces its two texts share (Jaccard, first and last token aside): labels
    that belong to the pairs by construction, which informative pair features show. None when every pair
    shares the same share (nothing to predict)."""
    shares = []
    for r in rows:
        a, b = set(r.input_ids[1:-1].tolist()), set(r.second.input_ids[1:-1].tolist())
        shares.append(len(a & b) / max(1, len(a | b)))
    return torch.tensor(shares) if len(set(shares)) > 1 else None
