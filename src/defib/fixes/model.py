"""Fixes applied to the model: the head's initial scale and input, an activation that caps the output, pretrained weights."""

from __future__ import annotations

import os

import torch
from torch import nn

from defib.evidence.params import group_of, head_linears
from defib.fixes.base import Fix, fix_for
from defib.fixes.loss import DropActivation

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


@fix_for
class PoolLastLayer(Fix):
    """Feed the head the last layer's [CLS] vector, last_hidden_state[:, 0], instead of a vector that ignores the input."""

    cause = "model.pooling"

    @classmethod
    def plan(cls, evidence, finding):
        return {} if evidence.get("cls_spread") else None  # only where that vector was seen to vary

    def __init__(self, params):
        super().__init__(params)
        self._cls = None  # the encoder's last [CLS] vector, until the head takes it

    def before_step(self, optimizer, watcher):
        """At the first step, hook the encoder's output and the first head layer's input.

        The head gets the vector only when its shape is what the user's pooling
        gave (batch x hidden), and only once per encoder call: a head called
        without a fresh encoder forward keeps its own input.
        """
        if not self.first_time():
            return
        from transformers import PreTrainedModel

        for root in watcher.roots():
            encoder = next((m for m in root.modules() if isinstance(m, PreTrainedModel)), None)
            heads = head_linears(root)
            if encoder is None or not heads:
                continue
            encoder.register_forward_hook(self._keep_cls)
            heads[0].register_forward_pre_hook(self._feed_cls)

    def _keep_cls(self, module, args, output):
        hidden = getattr(output, "last_hidden_state", None)
        if hidden is None and isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            hidden = output[0]
        self._cls = hidden[:, 0] if isinstance(hidden, torch.Tensor) and hidden.ndim == 3 else None

    def _feed_cls(self, module, args):
        cls, self._cls = self._cls, None
        if cls is not None and args and isinstance(args[0], torch.Tensor) and args[0].shape == cls.shape:
            return (cls.to(args[0].dtype), *args[1:])
        return None


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
