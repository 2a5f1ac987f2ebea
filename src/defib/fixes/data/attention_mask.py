"""Fix for data.attention_mask: pass the model a mask built from the padding."""

from __future__ import annotations

import torch

from defib.fixes.base import Fix, fix_for


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
