"""Active probes: ask a model questions that watching a run cannot answer.

``run_probes`` builds the sample, then runs each probe inside
:func:`~defib.evidence.probes.state.preserved` (weights, grads, modes,
optimizer and RNGs restored bit for bit) and fills a
:class:`~defib.signals.ProbeSignals`. Probes measure; the probe-stage rules
judge. A probe that fails leaves its part None and its error in ``errors``,
and the others still run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from defib.evidence import params as P
from defib.evidence.probes import passive, training
from defib.evidence.probes.data import LossFn, ProbeInputError, make_sample, outputs
from defib.evidence.probes.state import preserved
from defib.signals.probe import ProbeSignals

Progress = Callable[[str, int], Callable[[], None]]  # (description, total steps) -> advance by one


@dataclass(frozen=True)
class Budget:
    """How much work the probes may do (the defaults keep a MiniLM probe near a minute on two cores)."""

    max_rows: int = 64          # rows of the sample
    max_length: int = 64        # tokens per row when the probe tokenizes
    batch_size: int = 8         # rows per training step (gradient flow, LR sweep, permutation control)
    lr_steps: int = 24          # steps of the learning-rate sweep
    lr_min: float = 1e-6
    lr_max: float = 1.0
    overfit_rows: int = 8
    overfit_steps: int = 40
    permutation_steps: int = 16  # steps per run (two runs)
    default_lr: float = 1e-4    # AdamW's lr for the training probes when the sweep suggests none
    lr_bounds: tuple[float, float] = (1e-5, 1e-2)  # a suggested lr is clamped into this range for them


def _infer_task(model: nn.Module) -> Callable[[dict], str]:
    def infer(batch: dict) -> str:
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = _raw(model, batch)
        finally:
            model.train(was)
        return "regression" if out.reshape(out.shape[0], -1).shape[1] == 1 else "classification"
    return infer


def _raw(model: nn.Module, batch: dict) -> torch.Tensor:
    """The model's outputs as (B, width), whatever the task."""
    try:
        return outputs(model, batch, "regression").unsqueeze(-1)
    except ProbeInputError:
        return outputs(model, batch, "classification")


def _check_fits(model: nn.Module, sample: Any) -> None:
    """Class ids must index the model's logits (else every probe would fail on the same error)."""
    if sample.task != "classification":
        return
    model.eval()
    with torch.no_grad():
        width = outputs(model, sample.rows(slice(0, 2)), "classification").shape[1]
    top = int(sample.labels.max())
    if top >= width:
        raise ProbeInputError(f"class id {top} in the labels, but the model has {width} outputs")


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def run_probes(model: nn.Module, tokenizer: Any, data: Any, *, labels: Any = None, task: str | None = None,
               optimizer: torch.optim.Optimizer | None = None, loss_fn: LossFn | None = None,
               budget: Budget = Budget(), progress: Progress | None = None, source: str = "caller's data",
               only: tuple[str, ...] | None = None) -> ProbeSignals:
    """Run the probes (all, or those named in ``only``) and return what they measured."""
    with preserved(model, optimizer):
        sample = make_sample(data, labels, tokenizer, task=task, max_rows=budget.max_rows,
                             max_length=budget.max_length, device=_device(model), infer_task=_infer_task(model))
        keys = P.input_keys(P.find_config(model))
        sample.inputs = {k: v for k, v in sample.inputs.items() if k in keys}
        _check_fits(model, sample)
    sig = ProbeSignals(task=sample.task, rows=len(sample), source=source)
    if optimizer is not None:
        sig.user_lr = max(float(g["lr"]) for g in optimizer.param_groups)
    bar = progress or (lambda desc, total: (lambda: None))

    def run(name: str, fn: Callable[[], Any]) -> Any:
        if only is not None and name not in only:
            return None
        t0 = time.perf_counter()
        try:
            with preserved(model, optimizer):
                return fn()
        except ProbeInputError:
            raise
        except Exception as exc:  # one broken probe must not hide the others
            sig.errors[name] = f"{type(exc).__name__}: {exc}"
            return None
        finally:
            sig.seconds[name] = round(time.perf_counter() - t0, 3)

    sig.initial = run("initial", lambda: passive.initial_loss(model, sample, loss_fn))
    sig.sensitivity = run("sensitivity", lambda: passive.sensitivity(model, sample))
    sig.grads = run("grads", lambda: passive.grad_flow(model, sample, loss_fn, rows=budget.batch_size))
    sig.lr_range = run("lr_range", lambda: training.lr_range(
        model, sample, loss_fn, optimizer, steps=budget.lr_steps, lr_min=budget.lr_min, lr_max=budget.lr_max,
        batch_size=budget.batch_size, tick=bar("learning-rate sweep", budget.lr_steps)))
    lr = _training_lr(sig, budget)
    sig.overfit = run("overfit", lambda: training.overfit(
        model, sample, loss_fn, optimizer, lr=lr, rows=budget.overfit_rows, max_steps=budget.overfit_steps,
        tick=bar("overfit one batch", budget.overfit_steps)))
    sig.permutation = run("permutation", lambda: training.permutation(
        model, sample, loss_fn, optimizer, lr=lr, steps=budget.permutation_steps, batch_size=budget.batch_size,
        tick=bar("label-permutation control", 2 * budget.permutation_steps)))
    return sig


def _training_lr(sig: ProbeSignals, budget: Budget) -> float:
    """The lr for AdamW in the training probes (ignored when the user's optimizer is used)."""
    suggested = sig.lr_range.suggested_lr if sig.lr_range is not None else None
    if suggested is None or not math.isfinite(suggested):
        suggested = budget.default_lr
    lo, hi = budget.lr_bounds
    return min(hi, max(lo, suggested))
