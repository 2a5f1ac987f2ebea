"""Fix for model.not_pretrained: the checkpoint's pretrained weights loaded into the encoder."""

from __future__ import annotations

import os
import sys

import torch

from defib.evidence import weights
from defib.fixes.base import Fix, fix_for


@fix_for
class LoadPretrained(Fix):
    """Load the checkpoint's pretrained weights into the encoder (from_pretrained, not from_config or a re-init)."""

    cause = "model.not_pretrained"

    def before_step(self, optimizer, watcher):
        """Copy the weights in place before the first step, so the optimizer keeps its parameters.

        The encoder's config names the checkpoint it came from (``_name_or_path``);
        only a local folder with safetensors weights is read, never the hub
        and never a pickle. The first
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
            if not os.path.isdir(path):
                continue
            why = weights.refusal(path)
            if why:  # the rerun goes on unfixed, and so is not confirmed; the user learns why
                print(f"defib: --confirm: not loading the pretrained weights: {why}", file=sys.stderr)
                continue
            state = AutoModel.from_pretrained(path, use_safetensors=True).state_dict()
            own = base.state_dict()
            matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
            if len(matched) < len(own) // 2:
                continue  # another architecture: do not half-load it
            with torch.no_grad():
                for name, value in matched.items():
                    own[name].copy_(value)
