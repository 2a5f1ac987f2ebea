"""Fixes applied to the data path: shuffling, longer sequences, standardised or shifted targets."""

from __future__ import annotations

import torch

from defib.fixes.base import Fix, fix_for
from defib.signals import CLASS_LOSSES, REGRESSION_LOSSES


@fix_for
class Shuffle(Fix):
    """DataLoader(..., shuffle=True)."""

    cause = "data.unshuffled"

    @classmethod
    def plan(cls, evidence, finding):
        return {} if evidence.get("sampler") in ("SequentialSampler", None) else None

    def loader_kwargs(self, kwargs):
        from torch.utils.data import IterableDataset, SequentialSampler

        if isinstance(kwargs.get("dataset"), IterableDataset) or kwargs.get("batch_sampler") is not None:
            return kwargs
        sampler = kwargs.get("sampler")
        if sampler is None or isinstance(sampler, SequentialSampler):
            kwargs = dict(kwargs, sampler=None, shuffle=True)
        return kwargs


@fix_for
class LongerSequences(Fix):
    """Raise the tokenizer's max_length so texts are no longer cut to the same prefix."""

    cause = "data.truncation"
    ceiling = 512  # BERT's position embeddings end here

    @classmethod
    def plan(cls, evidence, finding):
        old = evidence.get("max_length")
        return {"max_length": min(cls.ceiling, max(128, 4 * int(old)))} if old else None

    @classmethod
    def describe(cls, params):
        return f"tokenizer(..., truncation=True, max_length={params['max_length']})"

    def tokenizer_kwargs(self, kwargs):
        if kwargs.get("max_length") and kwargs["max_length"] < self.params["max_length"]:
            kwargs = dict(kwargs, max_length=self.params["max_length"])
        return kwargs


@fix_for
class StandardiseTargets(Fix):
    """Train on standardised targets, (y - mean) / std, and map predictions back."""

    cause = "data.target_scale"

    @classmethod
    def plan(cls, evidence, finding):
        mean, std = evidence.get("target_mean"), evidence.get("target_std")
        return {"mean": mean, "std": std} if mean is not None and std else None

    @classmethod
    def describe(cls, params):
        return f"y = (y - {params['mean']:.4g}) / {params['std']:.4g}; predict y * std + mean"

    def loss_args(self, fn, input, target, named):
        if fn in REGRESSION_LOSSES and isinstance(target, torch.Tensor) and target.is_floating_point():
            target = (target - self.params["mean"]) / self.params["std"]
        return input, target, named


@fix_for
class ZeroBasedLabels(Fix):
    """Shift 1-based class ids to 0-based: labels - 1."""

    cause = "data.label_encoding"

    @classmethod
    def plan(cls, evidence, finding):
        lo, hi, k = evidence.get("label_min"), evidence.get("label_max"), evidence.get("num_logits")
        return {"shift": int(lo)} if lo is not None and k and lo >= 1 and hi == k else None

    @classmethod
    def describe(cls, params):
        return f"labels = labels - {params['shift']}"

    def loss_args(self, fn, input, target, named):
        if fn in CLASS_LOSSES and isinstance(target, torch.Tensor) and not target.is_floating_point():
            target = target - self.params["shift"]
        return input, target, named
