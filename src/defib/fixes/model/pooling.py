"""Fix for model.pooling: the head fed the last layer's [CLS] vector."""

from __future__ import annotations

import torch
from torch import nn

from defib.evidence.params import head_linears
from defib.fixes.base import Fix, fix_for


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

        The head is the model's own, or else a head the script keeps outside the
        encoder and calls on a vector it picked (``head(features(encoder, batch))``):
        then the encoder is one model and the head another. The head gets the
        vector only when its shape is what the user's pooling gave (batch x
        hidden), and only once per encoder call: a head called without a fresh
        encoder forward keeps its own input.
        """
        if not self.first_time():
            return
        from transformers import PreTrainedModel

        for root in watcher.roots():
            encoder = next((m for m in root.modules() if isinstance(m, PreTrainedModel)), None)
            if encoder is None:
                continue
            heads = head_linears(root) or _linears(watcher.head_outside())
            if not heads:
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


def _linears(module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)] if module is not None else []
