"""Fixes applied to the model: the head's initial scale, an activation that caps the output."""

from __future__ import annotations

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
