"""Name and group a model's parameters the way a person reads an encoder.

Gradient norms and update ratios are reported per module group: the
embeddings, each encoder layer, the encoder's own parameters outside its
layers (a final norm), the pooler, and the head (everything else, which is
what a fine-tuning script adds on top of the encoder). Names follow the
Hugging Face conventions: ``bert.encoder.layer.N``, ``roberta.encoder.layer.N``,
``distilbert.transformer.layer.N``, ``deberta.encoder.layer.N``,
``electra.encoder.layer.N``, ModernBERT's ``model.layers.N``; the head is
``classifier`` (``classifier.dense``/``out_proj``), DistilBERT's
``pre_classifier``, ModernBERT's ``head``, or whatever the script names it.
So grouping works for models defib never saw. A model wrapped by PEFT keeps
these names under its own prefix (``base_model.model.classifier...``), its
LoRA factors under the layer they adapt (``...query.lora_A.default.weight``:
that layer's group), and a head listed in ``modules_to_save`` twice: the copy
that trains (``classifier.modules_to_save.default``) and the frozen original
(``classifier.original_module``), which never runs while the adapter is on.
"""

from __future__ import annotations

import re

import torch
from torch import nn

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")
# the encoder's norms after its last layer: ModernBERT's model.final_norm, DeBERTa-v2's encoder.LayerNorm
# (over its relative position embeddings) and encoder.conv; named exactly, since a head may hold a norm too
_ENCODER_REST = re.compile(r"(?:^|\.)(?:final_norm|final_layer_norm|ln_f|norm_f)\."
                           r"|(?:^|\.)encoder\.(?:LayerNorm|layer_norm|norm|conv)\.")
_ORDER = {"embeddings": 0, "encoder": 2, "pooler": 3, "head": 4}


def group_of(name: str) -> str:
    """Module group of a parameter name: embeddings, layer.N, encoder, pooler or head."""
    m = _LAYER.search(name)
    if m:
        return f"layer.{int(m.group(1))}"
    if "embed" in name:
        return "embeddings"
    if "pooler" in name:
        return "pooler"
    if _ENCODER_REST.search(name):
        return "encoder"
    return "head"


def is_inactive_copy(name: str) -> bool:
    """A name under PEFT's frozen ``original_module``: a copy kept for disabling the adapter, not run in training."""
    return ".original_module." in f".{name}."


def group_order(group: str) -> tuple[int, int]:
    """Sort key: embeddings, layers in order, the encoder's final norm, pooler, head."""
    if group.startswith("layer."):
        return (1, int(group.split(".")[1]))
    return (_ORDER.get(group, 4), 0)


def named_params(roots: list[nn.Module]) -> dict[int, tuple[str, nn.Parameter]]:
    """id(param) -> (qualified name, param) over all root modules, first name wins."""
    out: dict[int, tuple[str, nn.Parameter]] = {}
    for root in roots:
        for name, p in root.named_parameters():
            out.setdefault(id(p), (name, p))
    return out


def head_linears(root: nn.Module) -> list[nn.Linear]:
    """Linear layers outside the encoder, in registration order (the head)."""
    return [m for name, m in root.named_modules()
            if isinstance(m, nn.Linear) and group_of(name + ".weight") == "head" and not is_inactive_copy(name)]


def encoder_layernorms(root: nn.Module) -> list[nn.LayerNorm]:
    return [m for name, m in root.named_modules()
            if isinstance(m, nn.LayerNorm) and group_of(name + ".weight") != "head"]


def at_default_init(ln: nn.LayerNorm) -> bool:
    """True when a LayerNorm is exactly as ``reset_parameters`` leaves it.

    Pretrained checkpoints never have every gain exactly 1 and every bias
    exactly 0, so an encoder full of such LayerNorms was never loaded (or was
    re-initialised after loading).
    """
    with torch.no_grad():
        w_ok = ln.weight is None or bool((ln.weight == 1).all())
        b_ok = ln.bias is None or bool((ln.bias == 0).all())
    return w_ok and b_ok


INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")  # the tokenizer outputs an encoder takes


def input_keys(config) -> tuple[str, ...]:
    """The tokenizer outputs to hand a model: token type ids only where its config has two types or more.

    RoBERTa and XLM-R have one token type (``type_vocab_size`` 1), DeBERTa-v3
    none (0): a tokenizer that marks a pair's second text as type 1 would index
    past their table, and without the ids they read type 0, as they were
    pretrained. A config without the field (DistilBERT, ModernBERT) takes
    whatever the tokenizer gives.
    """
    types = getattr(config, "type_vocab_size", None)
    return INPUT_KEYS if types is None or types >= 2 else INPUT_KEYS[:2]


def find_config(root: nn.Module):
    """The Hugging Face config of the model or of a submodule (a wrapped encoder)."""
    cfg = getattr(root, "config", None)
    if cfg is not None:
        return cfg
    for m in root.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "vocab_size"):
            return cfg
    return None


def input_embedding(root: nn.Module) -> nn.Embedding | None:
    """The token embedding table a model reads its input ids with (a Hugging Face model's, or the first one)."""
    for m in root.modules():
        getter = getattr(m, "get_input_embeddings", None)
        if callable(getter):
            try:
                emb = getter()
            except (NotImplementedError, AttributeError):
                continue
            if isinstance(emb, nn.Embedding):
                return emb
    return next((m for m in root.modules() if isinstance(m, nn.Embedding)), None)
