"""The label-permutation control at the end of a watched run: do the run's labels belong to its texts?

Labels shuffled apart from their texts look, from inside a run, like any
other failure to learn. ``defib probe`` tells them apart by training a model
briefly on real and on shuffled labels and comparing the held-out losses
(:func:`defib.evidence.probes.training.permutation`, judged by D201). This
is the same control, run once when a watched run ends flatlined with no
cause in sight, on the training rows the run kept
(:mod:`defib.evidence.watch.rows`).

It never touches the user's model, optimizer or random streams: it trains a
fresh copy loaded from the encoder's checkpoint folder
(:func:`~defib.evidence.probes.checkpoint.load_classifier`, as ``defib
probe`` loads one), on the CPU, under ``torch.random.fork_rng`` with
Python's and numpy's generators put back too, and torch's thread count
restored. It runs after training, so the run's losses are what they would
have been without it. Bounded: skipped for a model over ``MAX_PARAMS``
parameters, stopped when it runs past its wall-time budget.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from defib.evidence.probes import Budget, run_probes
from defib.evidence.probes.checkpoint import load_classifier
from defib.evidence.probes.data import ProbeInputError
from defib.evidence.watch.rows import Row
from defib.signals.run import LabelControl

MAX_PARAMS = 150_000_000  # larger models take minutes on a CPU for what this asks
BUDGET_SECONDS = 300.0    # wall time the whole control may take (MiniLM, 128 rows: 345 s on two busy cores)
CONTROL_ROWS = 128        # rows trained on (half) and held out (half)
MIN_ROWS = 96             # D201 judges only with 48 held-out rows or more
CONTROL_BUDGET = Budget(max_rows=CONTROL_ROWS)  # defib probe's steps and batch size, on up to CONTROL_ROWS rows
PROBES = ("sensitivity", "lr_range", "overfit", "permutation")  # what D201 reads, and the lr the last two use


class OutOfTime(Exception):
    """The control ran past its wall-time budget (raised from a probe's step; the probe records it)."""


def run_label_control(rows: list[Row], task: str | None, checkpoint: str | None, n_params: int, *,
                      seconds: float = BUDGET_SECONDS, budget: Budget | None = None,
                      say: Callable[[str], None] = lambda _msg: None) -> LabelControl:
    """Train a fresh copy of the checkpoint on ``rows`` with real and shuffled labels; what it measured, or why not."""
    control = LabelControl(rows=len(rows), checkpoint=checkpoint)
    why = _not_runnable(rows, task, checkpoint, n_params)
    if why or checkpoint is None:
        control.skipped = why
        return control
    use = rows[:CONTROL_ROWS]
    budget = budget or CONTROL_BUDGET
    say(f"defib: predictions flatlined with no cause seen; checking that the labels belong to their texts "
        f"(label-permutation control on a fresh copy of {checkpoint}, {len(use)} training rows, "
        f"at most {seconds:.0f} s)")
    started = time.perf_counter()
    deadline = started + seconds

    def tick() -> None:
        if time.perf_counter() > deadline:
            raise OutOfTime(f"past the {seconds:.0f} s budget")

    threads, py_rng, np_rng = torch.get_num_threads(), random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            labels = [int(r.target) if task == "classification" else r.target for r in use]
            model, _ = load_classifier(checkpoint, task, labels, tokenizer=False)
            batch = _padded(use, getattr(model.config, "pad_token_id", None) or 0)
            control.probe = run_probes(model, None, batch, labels=labels, task=task,
                                       budget=budget, progress=lambda _d, _n: tick,
                                       source="training rows kept during the run", only=PROBES)
            marked = _token_labels(use, task)
            perm = control.probe.permutation
            if perm is not None and marked is not None:
                # the positive control: the same training at the same lr, on labels that surely belong to the rows
                same_lr = replace(budget, lr_bounds=(perm.lr, perm.lr))
                control.power = run_probes(model, None, batch, labels=marked, task=task, budget=same_lr,
                                           progress=lambda _d, _n: tick, source="a token's presence in the rows",
                                           only=("permutation",)).permutation
    except ProbeInputError as exc:
        control.skipped = f"the control could not run: {exc}"
    finally:
        torch.set_num_threads(threads)
        random.setstate(py_rng)
        np.random.set_state(np_rng)
    control.seconds = round(time.perf_counter() - started, 2)
    if control.seconds > seconds:  # a step raised OutOfTime: the probe it stopped recorded it and measured nothing
        control.skipped = f"the control ran past its {seconds:.0f} s budget"
    return control


def _not_runnable(rows: list[Row], task: str | None, checkpoint: str | None, n_params: int) -> str | None:
    if checkpoint is None:
        return "the encoder was not loaded from a checkpoint folder on disk, so no fresh copy could be trained"
    if task not in ("regression", "classification"):
        return "no training rows could be paired with their targets (one encoder call per loss call, one target a row)"
    if len(rows) < MIN_ROWS:
        return f"only {len(rows)} training rows were kept with their targets; the control needs {MIN_ROWS}"
    if n_params > MAX_PARAMS:
        return f"the model has {n_params / 1e6:.0f}M parameters; the control trains at most {MAX_PARAMS // 10**6}M on a CPU"
    return None


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


def _token_labels(rows: list[Row], task: str) -> list | None:
    """Whether each row contains the token closest to being in half of them (first and last token aside).

    A label that belongs to its text by construction, for the positive
    control: a copy that cannot learn even this in the control's budget
    cannot show whether the real labels belong. None when no token is in
    between a quarter and three quarters of the rows.
    """
    inside = [set(r.input_ids[1:-1].tolist()) for r in rows]
    counts = Counter(t for ids in inside for t in ids)
    if not counts:
        return None
    half = len(rows) / 2
    token, n = min(counts.items(), key=lambda kv: (abs(kv[1] - half), kv[0]))
    if not len(rows) / 4 <= n <= 3 * len(rows) / 4:
        return None
    return [int(token in ids) if task == "classification" else float(token in ids) for ids in inside]
