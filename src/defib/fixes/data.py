"""Fixes applied to the data path: shuffling, longer sequences, standardised or shifted targets."""

from __future__ import annotations

import torch

from defib.fixes.base import Fix, fix_for
from defib.signals.run import CLASS_LOSSES, REGRESSION_LOSSES


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
class PaddingMask(Fix):
    """attention_mask = (input_ids != pad_token_id): 1 on the real tokens, 0 on the padding."""

    cause = "data.attention_mask"

    @classmethod
    def plan(cls, evidence, finding):
        return {"pad_token_id": evidence["pad_token_id"]} if evidence.get("pad_token_id") is not None else None

    def model_inputs(self, model, args, kwargs):
        import inspect

        pad = self.params["pad_token_id"]
        ids = kwargs.get("input_ids")
        if ids is None and args and isinstance(args[0], torch.Tensor):
            ids = args[0]
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point():
            return None
        old = kwargs.get("attention_mask")
        if old is None and len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].shape == ids.shape:
            old = args[1]
            mask = (ids != pad).to(old.dtype)
            return (args[0], mask, *args[2:]), kwargs
        dtype = old.dtype if isinstance(old, torch.Tensor) else torch.long
        if old is None and "attention_mask" not in inspect.signature(model.forward).parameters:
            return None  # a forward without a mask argument: nothing to pass it to
        return args, dict(kwargs, attention_mask=(ids != pad).to(dtype))


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
