"""LoRA adapters seen through PEFT's wrapper: which parameters are adapter factors, their scale, the update they make.

A model wrapped by ``peft.get_peft_model`` freezes its base weights by design
and trains low-rank factors beside each adapted layer, which then computes
``W x + s * B A x`` with ``s = lora_alpha / r`` and ``B`` exactly zero at the
start. A factor's own update/weight ratio says nothing about how much its
layer changes (``B`` starts at 0, so any step is infinitely large relative to
it; ``A``'s scale has nothing to do with ``W``'s), so an adapted layer's update
is measured as PEFT applies it: ``||s (B'A' - BA)|| / ||W||``, the ratio a
fully fine-tuned weight would give for the same change of the layer.

Duck-typed on PEFT's ``LoraLayer`` (``lora_A``/``lora_B`` module dicts or the
embedding variant's parameter dicts, ``scaling``, ``get_base_layer``), so peft
is never imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

@dataclass(frozen=True)
class LoraFactors:
    """One adapted layer's factors for one adapter: the layer computes ``base(x) + scale * B A x``."""

    name: str          # the adapted module, as the model names it (``...attention.self.query``)
    layer: nn.Module   # PEFT's LoraLayer: its ``scaling[adapter]`` is the scale a forward applies
    adapter: str       # the adapter's name (``default``)
    a: torch.Tensor    # (r, in)
    b: torch.Tensor    # (out, r)
    base: torch.Tensor  # the frozen weight the adapter adds to, (out, in) or (in, out)

    @property
    def scale(self) -> float:
        return float(self.layer.scaling[self.adapter])


def lora_factors(root: nn.Module) -> list[LoraFactors]:
    """Every (adapted layer, active adapter) of a model with 2-D LoRA factors, in module order."""
    out = []
    for name, module in root.named_modules():
        scaling = getattr(module, "scaling", None)
        if not isinstance(scaling, dict) or not callable(getattr(module, "get_base_layer", None)):
            continue
        base = getattr(module.get_base_layer(), "weight", None)
        for adapter in _active(module, scaling):
            a, b = _factor(module, "A", adapter), _factor(module, "B", adapter)
            if a is not None and b is not None and a.ndim == b.ndim == 2 and isinstance(base, torch.Tensor):
                out.append(LoraFactors(name, module, adapter, a, b, base))
    return out


def _active(module: nn.Module, scaling: dict) -> list[str]:
    active = getattr(module, "active_adapters", None)
    names = [active] if isinstance(active, str) else list(active or [])
    return [n for n in names if n in scaling]


def _factor(module: nn.Module, which: str, adapter: str) -> torch.Tensor | None:
    """``lora_A[adapter].weight`` (a Linear), or the embedding variant's ``lora_embedding_A[adapter]``."""
    linears = getattr(module, f"lora_{which}", None)
    if isinstance(linears, nn.ModuleDict) and adapter in linears:
        return getattr(linears[adapter], "weight", None)
    params = getattr(module, f"lora_embedding_{which}", None)
    if isinstance(params, nn.ParameterDict) and adapter in params:
        return params[adapter]
    return None


def copy_factors(f: LoraFactors) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) before a step: r x (in + out) numbers, a sliver of the layer."""
    return f.a.detach().clone(), f.b.detach().clone()


def update_norms(f: LoraFactors, before: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(||W||, ||s (B'A' - BA)||) as a (2,) tensor on the layer's device, never forming an (out, in) matrix.

    ``B'A' - BA = dB A' + B dA`` is ``U V`` with ``U = [dB, B]`` (out, 2r) and
    ``V = [A'; dA]`` (2r, in), and ``||U V||^2 = sum((U^T U) * (V V^T))``: two
    2r x 2r products. Taking the differences of the factors first keeps a
    tiny update from cancelling away in float32.
    """
    a0, b0 = before
    a1, b1 = f.a.detach().float(), f.b.detach().float()
    u = torch.cat([b1 - b0.float(), b0.float()], dim=1)  # (out, 2r)
    v = torch.cat([a1, a1 - a0.float()], dim=0)          # (2r, in)
    delta = ((u.T @ u) * (v @ v.T)).sum().clamp_min(0).sqrt() * abs(f.scale)
    return torch.stack([f.base.detach().float().norm(), delta])


def peft_config(root: nn.Module) -> Any:
    """The PEFT config of the model's active adapter (a ``LoraConfig``), or None for a model PEFT did not wrap."""
    for module in root.modules():
        configs = getattr(module, "peft_config", None)
        if isinstance(configs, dict) and configs:
            active = getattr(module, "active_adapter", None)
            return configs.get(active) if isinstance(active, str) and active in configs else next(iter(configs.values()))
    return None
