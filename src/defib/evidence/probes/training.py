"""Probes that train for a few steps: the learning-rate sweep, overfit one batch, the label-permutation control.

Each runs inside :func:`defib.evidence.probes.state.preserved`, which puts the
weights, the optimizer and the RNGs back afterwards. They train in eval mode
(dropout off): the question is what the optimizer can do with the weights,
and dropout noise on a handful of rows only blurs the answer.

The optimizer: the user's own when one is given (its class, param groups and
learning rates are part of what is probed; its state is restored), else AdamW
over the trainable parameters.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from defib.evidence.probes.data import LossFn, Sample, baseline, loss, outputs
from defib.evidence.probes.state import preserved
from defib.signals.probe import LRRange, Overfit, Permutation

Tick = Callable[[], None]


def _no_tick() -> None:
    return None


def make_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer | None, lr: float) -> torch.optim.Optimizer:
    """The user's optimizer, or a fresh AdamW (no weight decay) over the trainable parameters at ``lr``."""
    if optimizer is not None:
        return optimizer
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable or [nn.Parameter(torch.zeros(1))], lr=lr, weight_decay=0.0)


def _set_lr(opt: torch.optim.Optimizer, lr: float, ratios: list[float]) -> None:
    """Set the largest group lr to ``lr``, keeping the user's ratios between param groups."""
    for group, ratio in zip(opt.param_groups, ratios):
        group["lr"] = lr * ratio


def _ratios(opt: torch.optim.Optimizer) -> list[float]:
    top = max(float(g["lr"]) for g in opt.param_groups)
    return [float(g["lr"]) / top if top > 0 else 1.0 for g in opt.param_groups]


def _step(model: nn.Module, opt: torch.optim.Optimizer, batch: dict, y: torch.Tensor, task: str,
          loss_fn: LossFn | None) -> float:
    opt.zero_grad(set_to_none=True)
    with torch.enable_grad():
        value = loss(outputs(model, batch, task), y, task, loss_fn)
        if value.requires_grad:
            value.backward()
    opt.step()
    return float(value.detach())


def _eval_loss(model: nn.Module, sample: Sample, y: torch.Tensor, loss_fn: LossFn | None) -> float:
    with torch.no_grad():
        out = torch.cat([outputs(model, sample.rows(b), sample.task) for b in sample.batches(16)])
        return float(loss(out, y, sample.task, loss_fn))


def lr_range(model: nn.Module, sample: Sample, loss_fn: LossFn | None, optimizer: torch.optim.Optimizer | None, *,
             steps: int = 24, lr_min: float = 1e-6, lr_max: float = 1.0, batch_size: int = 8,
             tick: Tick = _no_tick) -> LRRange:
    """Raise the lr exponentially from ``lr_min`` to ``lr_max`` one step at a time; stop when the loss runs away.

    Every step trains on the same batch: with a sample of a few dozen rows,
    the differences between batches would swamp the effect of the lr (the
    usual LR finder walks a whole epoch of fresh batches and smooths them
    away; a probe cannot afford that). The loss is still lightly smoothed (an
    exponential average with bias correction), the suggestion is a tenth of
    the lr at its minimum (the steepest stable region lies about there), and
    "diverged" means the smoothed loss reached ``diverge_factor`` times its
    best, or went non-finite.
    """
    diverge_factor, beta = 4.0, 0.3
    model.eval()
    opt = make_optimizer(model, optimizer, lr_min)
    ratios = _ratios(opt)
    b = slice(0, min(batch_size, len(sample)))
    batch, y = sample.rows(b), sample.labels[b]
    factor = (lr_max / lr_min) ** (1 / max(1, steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    avg, best, diverged = 0.0, math.inf, None
    for i in range(steps):
        lr = lr_min * factor ** i
        _set_lr(opt, lr, ratios)
        value = _step(model, opt, batch, y, sample.task, loss_fn)
        tick()
        if not math.isfinite(value):
            diverged = lr
            break
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(smooth)
        best = min(best, smooth)
        if i > 2 and smooth > diverge_factor * best:
            diverged = lr
            break
    if not losses:
        return LRRange(lrs=[], losses=[], suggested_lr=None, min_loss_lr=None, diverged_lr=diverged,
                       optimizer=type(opt).__name__)
    at = min(range(len(losses)), key=losses.__getitem__)
    moved = losses[at] < 0.95 * losses[0]  # a flat curve suggests nothing
    return LRRange(lrs=lrs, losses=losses, suggested_lr=lrs[at] / 10 if moved else None, min_loss_lr=lrs[at],
                   diverged_lr=diverged, optimizer=type(opt).__name__, start_loss=losses[0])


def overfit(model: nn.Module, sample: Sample, loss_fn: LossFn | None, optimizer: torch.optim.Optimizer | None, *,
            lr: float, rows: int = 8, max_steps: int = 40, goal_share: float = 0.1,
            tick: Tick = _no_tick) -> Overfit:
    """Train on one batch of ``rows`` rows until its loss is ``goal_share`` of the constant baseline."""
    model.eval()
    opt = make_optimizer(model, optimizer, lr)
    b = slice(0, min(rows, len(sample)))
    batch, y = sample.rows(b), sample.labels[b]
    base = baseline(y, sample.task)
    goal = goal_share * base
    losses: list[float] = []
    reached = None
    for i in range(max_steps):
        value = _step(model, opt, batch, y, sample.task, loss_fn)
        tick()
        losses.append(value)
        if not math.isfinite(value):
            break
        if value <= goal:
            reached = i + 1
            break
    if reached is None and losses and math.isfinite(losses[-1]):  # the last step's effect is not in its loss
        with torch.no_grad():
            final = float(loss(outputs(model, batch, sample.task), y, sample.task, loss_fn))
        if final <= goal:
            reached = len(losses)
    return Overfit(rows=b.stop, steps=len(losses), max_steps=max_steps, losses=losses, baseline=base, goal=goal,
                   reached_at=reached, lr=max(float(g["lr"]) for g in opt.param_groups), optimizer=type(opt).__name__)


def _train_on(model: nn.Module, part: Sample, y: torch.Tensor, loss_fn: LossFn | None,
              optimizer: torch.optim.Optimizer | None, lr: float, steps: int, batch_size: int, tick: Tick) -> None:
    """``steps`` steps over the batches of ``part`` in turn, with labels ``y``."""
    model.eval()
    opt = make_optimizer(model, optimizer, lr)
    batches = part.batches(batch_size)
    for i in range(steps):
        b = batches[i % len(batches)]
        _step(model, opt, part.rows(b), y[b], part.task, loss_fn)
        tick()


def _split(sample: Sample, at: int) -> tuple[Sample, Sample]:
    def part(idx: slice) -> Sample:
        return Sample(inputs={k: v[idx] for k, v in sample.inputs.items()}, labels=sample.labels[idx],
                      task=sample.task)
    return part(slice(0, at)), part(slice(at, len(sample)))


def _standardised(sample: Sample, n_train: int) -> Sample:
    """Regression targets z-scored by the training half's mean and std.

    Without this, both runs spend their few steps walking the output from 0
    to the targets' mean (STS-B: 2.7), and the held-out loss measures how far
    they got, not whether the labels go with the texts.
    """
    y = sample.labels[:n_train]
    std = float(y.std()) or 1.0
    return Sample(inputs=sample.inputs, labels=(sample.labels - y.mean()) / std, task=sample.task)


def permutation(model: nn.Module, sample: Sample, loss_fn: LossFn | None, optimizer: torch.optim.Optimizer | None,
                *, lr: float, steps: int = 16, batch_size: int = 8, seed: int = 0,
                tick: Tick = _no_tick) -> Permutation:
    """The same short training twice from the same start, on the real labels and on the labels shuffled.

    Half the sample trains, the other half is held out. Labels that belong to
    their texts teach something that carries over to new rows, so the
    held-out loss after training on the real labels ends clearly below the
    held-out loss after training on a permutation of them; labels unrelated
    to their texts teach nothing that carries over either way (memorising
    the training half helps both runs equally, which is why the training
    loss is no test). Each run starts from the untouched weights and optimizer.
    Regression targets are standardised first (with the default MSE loss).
    """
    if sample.task == "regression" and loss_fn is None:
        sample = _standardised(sample, (len(sample) + 1) // 2)
    train, held = _split(sample, (len(sample) + 1) // 2)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train), generator=gen).to(train.labels.device)
    model.eval()
    start = _eval_loss(model, held, held.labels, loss_fn)
    results = []
    for y in (train.labels, train.labels[perm]):
        with preserved(model, optimizer, seed=seed):
            _train_on(model, train, y, loss_fn, optimizer, lr, steps, batch_size, tick)
            results.append((_eval_loss(model, held, held.labels, loss_fn), _eval_loss(model, train, y, loss_fn)))
    return Permutation(rows=len(sample), held_out=len(held), steps=steps, start_loss=start, real_loss=results[0][0],
                       permuted_loss=results[1][0], baseline=baseline(held.labels, sample.task),
                       lr=lr if optimizer is None else max(float(g["lr"]) for g in optimizer.param_groups),
                       real_train_loss=results[0][1], permuted_train_loss=results[1][1])
