"""Fixes applied at the loss call: reshape, weights, reduction, log-softmax, no extra activation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from defib.fixes.base import Fix, fix_for
from defib.signals.run import CLASS_LOSSES


@fix_for
class ReshapeAtLoss(Fix):
    """loss_fn(pred.reshape(target.shape), target): the [B, 1] head output reshaped to [B]."""

    cause = "loss.shape_mismatch"

    def loss_args(self, fn, input, target, named):
        if isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor) and fn not in CLASS_LOSSES \
                and input.shape != target.shape and input.numel() == target.numel():
            input = input.reshape(target.shape)
        return input, target, named


@fix_for
class LogSoftmaxForNll(Fix):
    """Feed nll_loss log-probabilities: log_softmax on the logits first."""

    cause = "loss.wrong_loss"

    @classmethod
    def plan(cls, evidence, finding):
        return {} if evidence.get("loss") == "nll_loss" else None  # the other wrong-loss shapes need a rewrite

    def loss_args(self, fn, input, target, named):
        if fn == "nll_loss" and isinstance(input, torch.Tensor) and input.ndim >= 2:
            input = F.log_softmax(input, dim=1)
        return input, target, named


@fix_for
class DropActivation(Fix):
    """Remove the activation applied on the user's line before the loss."""

    cause = "loss.double_activation"

    @classmethod
    def plan(cls, evidence, finding):
        where = finding.get("where")
        return {"file": where["file"], "line": where["line"]} if where else None

    @classmethod
    def describe(cls, params):
        return f"drop the activation on {params['file']}:{params['line']}"

    def skip_activation(self, filename: str, line: int) -> bool:
        return line == self.params["line"] and _same_file(filename, self.params["file"])


@fix_for
class ClassWeights(Fix):
    """Weight cross-entropy by inverse class frequency (n / (K * n_c))."""

    cause = "loss.class_imbalance"
    rescales_loss = True

    @classmethod
    def plan(cls, evidence, finding):
        counts = {int(k): int(v) for k, v in (evidence.get("label_counts") or {}).items()}
        if len(counts) < 2:
            return None
        total, k = sum(counts.values()), max(counts) + 1
        return {"weights": [total / (len(counts) * counts[c]) if counts.get(c) else 1.0 for c in range(k)]}

    @classmethod
    def describe(cls, params):
        shown = ", ".join(f"{w:.2f}" for w in params["weights"])
        return f"cross_entropy(..., weight=torch.tensor([{shown}]))"

    def loss_args(self, fn, input, target, named):
        if fn in ("cross_entropy", "nll_loss") and named.get("weight") is None and isinstance(input, torch.Tensor) \
                and input.ndim == 2 and input.shape[1] == len(self.params["weights"]):
            named = dict(named, weight=torch.tensor(self.params["weights"], dtype=input.dtype, device=input.device))
        return input, target, named


@fix_for
class LossScale(Fix):
    """Undo the loss scaling: mean reduction, or gradients divided by the measured factor."""

    cause = "loss.scale"

    @classmethod
    def plan(cls, evidence, finding):
        factor = evidence.get("scale_vs_mean")
        if evidence.get("reduction") == "sum":
            return {"reduction": "mean"}
        if isinstance(factor, (int, float)) and factor > 0:
            return {"grad_scale": 1.0 / factor}
        return None

    @classmethod
    def describe(cls, params):
        return "reduction='mean'" if params.get("reduction") else f"gradients x {params['grad_scale']:.3g}"

    def loss_args(self, fn, input, target, named):
        if self.params.get("reduction") and named.get("reduction") == "sum":
            named = dict(named, reduction="mean")
        return input, target, named

    def before_step(self, optimizer, watcher):
        scale_grads(optimizer, self.params.get("grad_scale"))


def scale_grads(optimizer: Any, factor: float | None) -> None:
    if not factor:
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad.mul_(factor)


def _same_file(a: str, b: str) -> bool:
    import os

    return os.path.basename(a) == os.path.basename(b) and (
        os.path.abspath(a) == os.path.abspath(b) or not os.path.isabs(b))
