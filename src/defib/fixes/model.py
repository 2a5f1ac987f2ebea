"""Fixes applied to the model: the head's initial scale, an activation that caps the output, pretrained weights."""

from __future__ import annotations

import os

import torch
from torch import nn

from defib.evidence.params import group_of
from defib.fixes.base import Fix, fix_for
from defib.fixes.loss import DropActivation

HEAD_STD = 0.02  # BERT's initializer_range, what from_pretrained gives a fresh head


@fix_for
class ReinitHead(Fix):
    """Re-initialise the head's linear layers: normal(0, 0.02) weights, zero bias."""

    cause = "model.bad_head_init"

    def before_step(self, optimizer, watcher):
        if not self.first_time():
            return
        for root in watcher.roots():
            for name, module in root.named_modules():
                if isinstance(module, nn.Linear) and group_of(name + ".weight") == "head":
                    nn.init.normal_(module.weight, std=HEAD_STD)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)


@fix_for
class DropRangeActivation(DropActivation):
    """Remove the activation that keeps the output from reaching the targets' range."""

    cause = "model.output_range"


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


@fix_for
class LoadPretrained(Fix):
    """Load the checkpoint's pretrained weights into the encoder (from_pretrained, not from_config or a re-init)."""

    cause = "model.not_pretrained"

    def before_step(self, optimizer, watcher):
        """Copy the weights in place before the first step, so the optimizer keeps its parameters.

        The encoder's config names the checkpoint it came from (``_name_or_path``);
        only a local folder with weights is read, never the hub. The first
        forward and backward already ran on the random weights: their one step
        (about lr in size under Adam) is noise next to pretrained weights.
        """
        if not self.first_time():
            return
        from transformers import AutoModel, PreTrainedModel

        for root in watcher.roots():
            encoder = next((m for m in root.modules() if isinstance(m, PreTrainedModel)), None)
            if encoder is None:
                continue
            base = encoder.base_model
            path = getattr(base.config, "_name_or_path", "") or ""
            if not (os.path.isdir(path) and any(os.path.exists(os.path.join(path, f)) for f in WEIGHT_FILES)):
                continue
            state = AutoModel.from_pretrained(path).state_dict()
            own = base.state_dict()
            matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
            if len(matched) < len(own) // 2:
                continue  # another architecture: do not half-load it
            with torch.no_grad():
                for name, value in matched.items():
                    own[name].copy_(value)
