"""Probes that only look: the initial loss, input sensitivity and gradient flow.

They run the model as it is (no optimizer step). Sensitivity runs in eval mode
so that dropout noise is not mistaken for a response to the input; gradient
flow runs in train mode, as training does.
"""

from __future__ import annotations

import torch
from torch import nn

from defib.evidence import params as P
from defib.evidence.probes.data import LossFn, Sample, accepts_mask, baseline, loss, outputs, reference
from defib.evidence.stats import rel_spread
from defib.signals.probe import GradFlow, InitialLoss, Sensitivity

MAX_TOKENS = 512  # token vectors kept for the token spread (bounded work on long batches)


def initial_loss(model: nn.Module, sample: Sample, loss_fn: LossFn | None) -> InitialLoss:
    """The loss of the model as it stands, in eval mode, against ln K / mean(y^2) and the constant baseline."""
    model.eval()
    with torch.no_grad():
        out = torch.cat([outputs(model, sample.rows(b), sample.task) for b in sample.batches(16)])
        value = float(loss(out, sample.labels, sample.task, loss_fn))
    k = int(out.shape[1]) if out.ndim == 2 else None
    y = sample.labels
    return InitialLoss(loss=value, reference=reference(y, sample.task, k), baseline=baseline(y, sample.task),
                       n_classes=k, output_absmax=float(out.abs().max()), output_std=float(out.float().std()),
                       target_std=float(y.float().std()) if sample.task == "regression" else None)


def _last_layer(model: nn.Module) -> nn.Module | None:
    """The last encoder layer (``...layer.N`` with the largest N), whose output holds the token vectors."""
    best, best_n = None, -1
    for name, module in model.named_modules():
        parts = name.split(".")
        if len(parts) >= 2 and parts[-2] in ("layer", "layers", "block", "blocks") and parts[-1].isdigit():
            if int(parts[-1]) > best_n:
                best, best_n = module, int(parts[-1])
    return best


def sensitivity(model: nn.Module, sample: Sample) -> Sensitivity:
    """Outputs across inputs; with the attention mask rolled across the batch; pooled vs token spread."""
    model.eval()
    batch = sample.rows(slice(0, 32))
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    layer = _last_layer(model)

    # the hooks return None: a hook's return value would replace the layer's output (DeBERTa's is a pair)
    def keep_tokens(m: nn.Module, a: tuple, out) -> None:
        seen.setdefault("tokens", (out[0] if isinstance(out, tuple) else out).detach())

    def keep_pooled(m: nn.Module, a: tuple) -> None:  # ... or the head's input
        seen.setdefault("pooled", a[0].detach())

    if layer is not None:
        hooks.append(layer.register_forward_hook(keep_tokens))
    head = P.head_linears(model)
    if head:
        hooks.append(head[0].register_forward_pre_hook(keep_pooled))
    try:
        with torch.no_grad():
            out = outputs(model, batch, sample.task).float()
    finally:
        for h in hooks:
            h.remove()
    flat = out.reshape(out.shape[0], -1)  # (B, 1) or (B, K)
    s = Sensitivity(rows=int(flat.shape[0]), output_spread=rel_spread(flat))
    mask = batch.get("attention_mask")
    tokens = seen.get("tokens")
    if isinstance(tokens, torch.Tensor) and tokens.ndim == 3:  # (B, T, H)
        s.cls_spread = rel_spread(tokens[:, 0])
        real = tokens[mask.bool()] if mask is not None and mask.shape == tokens.shape[:2] else tokens.flatten(0, 1)
        if real.shape[0] > MAX_TOKENS:
            real = real[torch.linspace(0, real.shape[0] - 1, MAX_TOKENS).long()]
        s.token_spread = rel_spread(real)
    pooled = seen.get("pooled")
    if isinstance(pooled, torch.Tensor) and pooled.ndim >= 2 and pooled.shape[0] == flat.shape[0]:
        pooled = pooled[:, 0] if pooled.ndim == 3 else pooled
        s.pooled_spread = rel_spread(pooled)
    s.mask_accepted = accepts_mask(model)
    if mask is not None:
        s.padded_rows = int((mask == 0).any(1).sum())
        if s.mask_accepted:
            _mask_roll(model, batch, sample.task, flat, s)
    lns = P.encoder_layernorms(model)
    s.encoder_layernorms = len(lns)
    s.layernorm_at_init = sum(P.at_default_init(ln) for ln in lns) / len(lns) if lns else None
    return s


def _mask_roll(model: nn.Module, batch: dict, task: str, base: torch.Tensor, s: Sensitivity) -> None:
    """Give each row its neighbour's attention mask: a model that uses the mask must answer differently."""
    mask = batch["attention_mask"]
    rolled = mask.roll(1, dims=0)
    changed = (rolled != mask).any(1)
    s.mask_rows_changed = int(changed.sum())
    if s.mask_rows_changed == 0:
        return
    with torch.no_grad():
        out = outputs(model, {**batch, "attention_mask": rolled}, task).float().reshape(base.shape)
    spread = float(base.std(0).mean())
    delta = float((out[changed] - base[changed]).abs().mean())
    s.mask_effect = delta / spread if spread > 0 else (0.0 if delta == 0 else float("inf"))


def grad_flow(model: nn.Module, sample: Sample, loss_fn: LossFn | None, rows: int = 8) -> GradFlow:
    """One backward pass in train mode; gradient norm per module group and the tensors it never reaches."""
    model.train()
    named = list(model.named_parameters())
    for _, p in named:
        p.grad = None
    batch = slice(0, rows)
    with torch.enable_grad():
        pred = outputs(model, sample.rows(batch), sample.task)
        value = loss(pred, sample.labels[batch], sample.task, loss_fn)
        if value.requires_grad:
            value.backward()
    sq: dict[str, float] = {}
    frozen, no_grad, zero = [], [], []
    for name, p in named:
        if not p.requires_grad:
            frozen.append(name)
        elif p.grad is None:
            no_grad.append(name)
        else:
            norm = float(p.grad.detach().float().norm())
            if norm == 0:
                zero.append(name)
            group = P.group_of(name)
            sq[group] = sq.get(group, 0.0) + norm ** 2
    total = sum(p.numel() for _, p in named) or 1
    norms = {g: sq[g] ** 0.5 for g in sorted(sq, key=P.group_order)}
    return GradFlow(norms=norms, frozen=frozen, no_grad=no_grad, zero_grad=zero,
                    trainable=sum(p.requires_grad for _, p in named), tensors=len(named),
                    trainable_encoder=sum(p.requires_grad and P.group_of(n) not in ("head", "pooler") for n, p in named),
                    head=[n for n, _ in named if P.group_of(n) == "head"],
                    trainable_share=sum(p.numel() for _, p in named if p.requires_grad) / total)
