"""Fix for data.unshuffled: let the DataLoader draw batches in a random order."""

from __future__ import annotations

from defib.fixes.base import Fix, fix_for


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
