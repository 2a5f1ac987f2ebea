"""The probe's sample: rows as tensors, the model called the same way for every probe, and its loss.

A probe asks the model questions through three functions: :func:`outputs`
(call the model on a batch and get its predictions whatever it returns: a
tensor, a tuple, or a transformers output with ``.logits``), :func:`loss`
(the user's loss function, or MSE / cross-entropy by task) and
:func:`baseline` (the loss of the best constant predictor, the yardstick
every probe compares against).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from defib.evidence.params import INPUT_KEYS
from defib.evidence.readers import InputError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ProbeInputError(InputError):
    """The sample or the model cannot be probed as given (a one-line reason, printed as any bad input is)."""


@dataclass
class Sample:
    """Up to a few dozen rows: the model's inputs (N, T) and the labels (N,)."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor                  # float (regression) or long (classification)
    task: str                             # regression | classification

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def rows(self, idx: slice | torch.Tensor) -> dict[str, torch.Tensor]:
        """The inputs of some rows, trimmed to their longest real sequence (less padding, faster steps)."""
        batch = {k: v[idx] for k, v in self.inputs.items()}
        mask = batch.get("attention_mask")
        if mask is not None and mask.ndim == 2 and mask.shape[1] > 1:
            keep = int(mask.sum(1).max())
            if keep > 0 and bool((mask[:, keep:] == 0).all()):  # right padding only
                batch = {k: v[:, :keep] for k, v in batch.items()}
        return batch

    def batches(self, size: int) -> list[slice]:
        return [slice(i, min(i + size, len(self))) for i in range(0, len(self), size)]


def make_sample(data: Any, labels: Any, tokenizer: Any, *, task: str | None, max_rows: int,
                max_length: int, device: torch.device, infer_task: Callable[[dict], str] | None = None) -> Sample:
    """Turn what the user passed (texts, text pairs or a tokenized batch) into a :class:`Sample`.

    Without ``task``, ``infer_task(inputs)`` decides (the orchestrator asks the
    model: one output per row is a regression); failing that, labels with a
    fractional part make a regression.
    """
    if isinstance(data, Mapping) or hasattr(data, "keys") and "input_ids" in data.keys():
        if "input_ids" not in data:
            raise ProbeInputError("the batch has no 'input_ids'")
        inputs = {k: torch.as_tensor(data[k]) for k in INPUT_KEYS if k in data}
        if labels is None:
            labels = data.get("labels", data.get("label"))
    elif isinstance(data, Sequence) and not isinstance(data, str) and len(data) > 0:
        if tokenizer is None:
            raise ProbeInputError("texts need a tokenizer: pass tokenizer=AutoTokenizer.from_pretrained(path)")
        rows = list(data)[:max_rows]
        if all(isinstance(r, str) for r in rows):
            enc = tokenizer(rows, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        elif all(isinstance(r, (tuple, list)) and len(r) == 2 and all(isinstance(t, str) for t in r) for r in rows):
            enc = tokenizer([a for a, _ in rows], [b for _, b in rows], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
        else:
            raise ProbeInputError("data must be a list of texts, a list of (text, text) pairs, or a tokenized batch")
        inputs = {k: enc[k] for k in INPUT_KEYS if k in enc}
    else:
        raise ProbeInputError("data must be a non-empty list of texts, text pairs, or a tokenized batch")
    if labels is None:
        raise ProbeInputError("no labels: pass labels=[...] (or a 'labels' key in the batch)")
    y = torch.as_tensor(labels if isinstance(labels, torch.Tensor) else list(labels)[:max_rows]).flatten()
    inputs = {k: v[:max_rows].to(device) for k, v in inputs.items()}
    n = int(inputs["input_ids"].shape[0])
    if y.shape[0] != n:
        raise ProbeInputError(f"{y.shape[0]} labels for {n} rows")
    if n < 4:
        raise ProbeInputError(f"{n} rows: the probes need at least 4")
    if not bool(torch.isfinite(y.double()).all()):
        raise ProbeInputError("the labels contain NaN or infinite values")
    if task is None and infer_task is not None:
        task = infer_task({k: v[:2] for k, v in inputs.items()})
    if task is None:
        task = "regression" if y.is_floating_point() and bool((y != y.round()).any()) else "classification"
    if task == "classification":
        if bool((y != y.round()).any()) or float(y.min()) < 0:
            raise ProbeInputError("classification labels must be class ids 0..K-1")
        y = y.long()
    elif task == "regression":
        y = y.float()
    else:
        raise ProbeInputError(f"unknown task {task!r}: use regression or classification")
    return Sample(inputs=inputs, labels=y.to(device), task=task)


def _accepted(model: nn.Module) -> set[str] | None:
    """The keyword arguments ``model.forward`` takes (None: it takes ``**kwargs``, so anything)."""
    params = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)


def accepts_mask(model: nn.Module) -> bool:
    accepted = _accepted(model)
    return accepted is None or "attention_mask" in accepted


def outputs(model: nn.Module, batch: dict[str, torch.Tensor], task: str) -> torch.Tensor:
    """Call the model; predictions as (B,) for regression and (B, K) logits for classification."""
    accepted = _accepted(model)
    out = model(**{k: v for k, v in batch.items() if accepted is None or k in accepted})
    if hasattr(out, "logits"):
        out = out.logits
    elif isinstance(out, Mapping):
        out = out["logits"]
    elif isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ProbeInputError(f"the model returned {type(out).__name__}, not a tensor or an output with .logits")
    b = batch["input_ids"].shape[0]
    if task == "regression":
        if out.numel() != b:
            raise ProbeInputError(f"regression needs one output per row; the model gives {tuple(out.shape)}")
        return out.reshape(b)
    if out.ndim != 2 or out.shape[0] != b or out.shape[1] < 2:
        raise ProbeInputError(f"classification needs (batch, classes) logits; the model gives {tuple(out.shape)}")
    return out


def loss(pred: torch.Tensor, y: torch.Tensor, task: str, loss_fn: LossFn | None = None) -> torch.Tensor:
    if loss_fn is not None:
        return loss_fn(pred, y)
    return F.mse_loss(pred, y) if task == "regression" else F.cross_entropy(pred, y)


def baseline(y: torch.Tensor, task: str) -> float:
    """Loss of the best constant predictor: var(y) for MSE, the label entropy for cross-entropy."""
    if task == "regression":
        return float(y.float().var(unbiased=False))
    counts = torch.bincount(y).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def reference(y: torch.Tensor, task: str, n_classes: int | None) -> float:
    """What an uninformed head scores: ln K (uniform logits) or mean(y^2) (outputs at 0)."""
    if task == "regression":
        return float((y.float() ** 2).mean())
    return math.log(n_classes or int(y.max()) + 1)
