"""Fix for model.bad_head_init: the head re-initialised the way from_pretrained initialises a fresh one."""

from __future__ import annotations

from torch import nn

from defib.evidence.params import group_of
from defib.fixes.base import Fix, fix_for

HEAD_STD = 0.02  # BERT's initializer_range, what from_pretrained gives a fresh head


@fix_for
class ReinitHead(Fix):
    """Re-initialise the head's linear layers: normal(0, 0.02) weights, zero bias."""

    cause = "model.bad_head_init"

    def before_step(self, optimizer, watcher):
        """Re-initialise before the first step, and drop that step's gradients.

        The first backward already ran through the oversized head, so its
        gradients are tens to hundreds of times the normal size everywhere.
        Applied, they would enter Adam's second-moment estimate, which
        (beta2 0.999) remembers them for about a thousand steps and divides
        every later update by them, so a re-initialised head whose first step
        kept its gradients can still be worse than the constant predictor a
        hundred steps later. With ``grad = None`` the optimizer
        skips the step for every parameter and starts its statistics clean.
        """
        if not self.first_time():
            return
        for root in watcher.roots():
            for name, module in root.named_modules():
                if isinstance(module, nn.Linear) and group_of(name + ".weight") == "head":
                    nn.init.normal_(module.weight, std=HEAD_STD)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
