"""Evidence about the model: its structure, its forward pass, what enters its head, where the user initialised it.

The watcher hands this part the forward calls that matter (the outermost
module, an encoder's output); the head's input is read by a pre-hook on the
head's first linear layer. ``nn.init`` and activation calls arrive from the
patches in :mod:`defib.evidence.hooks.torch_patches`.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any

import torch
from torch import nn

from defib.evidence import adapters as A
from defib.evidence import params as P
from defib.evidence.callsite import is_user_file, make_where, user_frame, where_here, where_picked
from defib.evidence.layer_origin import layer_where
from defib.evidence.provenance import origin_line
from defib.evidence.stats import rel_spread
from defib.evidence.watch.forward import Hook
from defib.evidence.watch.guard import Part, guarded
from defib.signals.common import Series
from defib.signals.run import ModelSignals


# A row of the head's input whose cosine with one position's encoder vector exceeds this is a copy of it: two
# different token vectors of a trained encoder are far less alike; float32 rounding and dropout's rescaling keep a
# true copy above it.
PICKED_COSINE = 0.999


class ModelEvidence(Part):
    """The models seen (weakly held), their parameter names, and the model's signals."""

    def __init__(self, watcher: Any):
        super().__init__(watcher)
        self._roots: list[weakref.ref] = []
        self._names: dict[int, tuple[str, nn.Parameter]] = {}
        self._lora: dict[int, A.LoraFactors] | None = None  # id(factor) -> its adapted layer, over every model seen
        self._head_hooks: list[Any] = []
        self._init_where: dict[int, Any] = {}
        # (autograd node, where) of the user's recent activation calls, until the loss is first seen
        self._activations: deque = deque(maxlen=8)
        # (autograd node, (name, low, high)) of the user's recent bounded scores (cosine similarity), likewise
        self._bounded: deque = deque(maxlen=8)
        self._inner_head = False  # the model's own head is hooked (else a head the script calls at top level is)
        self._outside_head: weakref.ref | None = None  # that head called at top level, for a confirmation fix
        self._linear_modules: dict[int, tuple[weakref.ref, bool]] = {}  # id(module) -> (module, holds a Linear)
        # the last encoder output of a sampled training forward (weakly: the user's forward holds it), for the head's
        # input to be matched against its positions
        self._hidden: tuple[weakref.ref, weakref.ref | None] | None = None

    def roots(self) -> list[nn.Module]:
        return [m for m in (r() for r in self._roots) if m is not None]

    def head_outside(self) -> nn.Module | None:
        """The head the script calls at top level on a vector it picked (see ``outside_head``), if one was seen."""
        return self._outside_head() if self._outside_head is not None else None

    def names(self) -> dict[int, tuple[str, nn.Parameter]]:
        """id(parameter) -> (name, parameter), over every model seen."""
        if not self._names:
            self._names = P.named_params(self.roots())
        return self._names

    def lora(self) -> dict[int, A.LoraFactors]:
        """id(LoRA factor) -> the adapted layer it belongs to (A and B both), over every model seen."""
        if self._lora is None:
            self._lora = {id(t): f for root in self.roots() for f in A.lora_factors(root) for t in (f.a, f.b)}
        return self._lora

    def add_root(self, module: nn.Module) -> None:
        if any(r() is module for r in self._roots):
            return
        self._roots.append(weakref.ref(module))
        self._names, self._lora = {}, None  # rebuilt lazily
        if self.w.fix is not None:  # a confirmation rerun: the fix may change the model's inputs from its next call
            self._head_hooks.append(module.register_forward_pre_hook(Hook(self._fix_model_inputs), with_kwargs=True))
        if self.w.s.model is None:
            self.w.s.model = ModelSignals(name=type(module).__name__)
            self._inspect_model(module)

    def _fix_model_inputs(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        """Let the confirmation fix rewrite the top-level model's inputs (the global pre-hook sees no kwargs)."""
        return self.w.apply_fix("model_inputs", module, args, kwargs, default=None)

    def _inspect_model(self, root: nn.Module) -> None:
        m = self.w.s.model
        lns = P.encoder_layernorms(root)
        if lns:
            m.layernorm_at_init = sum(P.at_default_init(ln) for ln in lns) / len(lns)
        m.pretrained_loaded = any(getattr(sub, "_defib_pretrained", False) for sub in root.modules())
        m.built_where = next((sub._defib_where for sub in root.modules()
                              if getattr(sub, "_defib_where", None) is not None), None)
        m.encoder_tensors = sum(1 for n, _ in root.named_parameters() if P.group_of(n) != "head")
        heads = P.head_linears(root)
        if heads:
            first = heads[0]
            m.head_params = [n for n, _ in root.named_parameters()
                             if P.group_of(n) == "head" and not P.is_inactive_copy(n)]
            w = first.weight.detach().float()
            m.head_fan_in = int(w.shape[1]) if w.ndim == 2 else None
            m.head_init_nonfinite = not bool(torch.isfinite(w).all())
            finite = w[torch.isfinite(w)]
            m.head_init_std = float(finite.std()) if finite.numel() > 1 else None
            m.head_init_absmax = float(finite.abs().max()) if finite.numel() else None
            self._head_hooks.append(first.register_forward_pre_hook(Hook(self._head_input)))
            self._inner_head = True
        self._inspect_adapters(root)
        cfg = P.find_config(root)
        if cfg is not None and self.w.data.signals().pad_token_id is None:
            self.w.data.signals().pad_token_id = getattr(cfg, "pad_token_id", None)

    def _inspect_adapters(self, root: nn.Module) -> None:
        """A model wrapped by PEFT: its method, the adapted modules, the LoRA scale and the user's config line."""
        config = A.peft_config(root)
        if config is None:
            return
        m = self.w.s.model
        method = getattr(config, "peft_type", None)
        m.adapter_method = str(getattr(method, "value", method))
        m.adapter_where = getattr(config, "_defib_where", None)
        factors = A.lora_factors(root)
        m.adapter_modules = list(dict.fromkeys(f.name for f in factors))
        if factors:
            m.lora_scale = sorted(f.scale for f in factors)[len(factors) // 2]
            made = m.adapter_where
            m.lora_scale_where = made and make_where(made.file, origin_line(made.file, made.line, "lora_alpha",
                                                                            getattr(config, "lora_alpha", None)))
            m.adapter_targets_where = made and make_where(made.file, origin_line(made.file, made.line, "target_modules"))

    def _head_input(self, module: nn.Module, args: tuple) -> None:
        if not (args and isinstance(args[0], torch.Tensor) and torch.is_grad_enabled() and module.training):
            return
        if self.w.sampling():
            self._spread_into(self.w.s.model.head_input_spread, args[0])
            self._padded_pick(args[0])
        m = self.w.s.model
        if m.head_input_where is None or (not args[0].requires_grad and not m.head_input_detached):
            self._note_head_call(args[0])

    @guarded
    def _note_head_call(self, x: torch.Tensor) -> None:
        m = self.w.s.model
        input_requires_grad = x.requires_grad
        # the user's variable that holds the head's input, or the vector a dropout on the way made it from
        where = where_picked(lambda v: isinstance(v, torch.Tensor) and v.shape == x.shape, skip=3)
        if m.head_input_where is None:
            m.head_input_where = where
            m.pool_layer_where = layer_where(where)
        if not input_requires_grad and not m.head_input_detached:
            m.head_input_detached = True
            m.head_input_where = where

    @guarded
    def _spread_into(self, series: Series, x: torch.Tensor) -> None:
        x = x.detach().float()
        if x.ndim == 3:
            x = x[:, 0]
        if x.ndim == 2 and x.shape[0] > 1:
            series.add(self.w.s.step, rel_spread(x))

    def detach(self) -> None:
        for h in self._head_hooks:
            h.remove()
        self._head_hooks.clear()

    def encoder_output(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> None:
        """An encoder's ``last_hidden_state`` in a training forward (sampled steps): how spread its vectors are."""
        m = self.w.s.model
        if m is None:
            return
        h = hidden.detach().float()  # (B, T, H)
        step = self.w.s.step
        if h.shape[0] > 1:
            m.cls_spread.add(step, rel_spread(h[:, 0]))
        if mask is not None and mask.shape == h.shape[:2]:
            tokens = h[mask.bool()]
        else:
            tokens = h.reshape(-1, h.shape[-1])
        if tokens.shape[0] > 512:
            tokens = tokens[torch.linspace(0, tokens.shape[0] - 1, 512).long()]
        m.token_spread.add(step, rel_spread(tokens))
        self._hidden = (weakref.ref(hidden), weakref.ref(mask) if mask is not None else None)

    def outside_head(self, module: nn.Module, args: tuple) -> None:
        """A module with a linear layer that the script called at top level, in a training forward, on a float tensor:
        a head outside the model, on a vector the script picked (``head(out.hidden_states[-1][:, 0])``). When the
        model has no head of its own, its input is measured as the model's own head's is.

        Called from the forward hook outside ``guarded`` (as ``_head_input`` is), so that the guarded
        measurements below run; what is read here cannot raise."""
        m = self.w.s.model
        x = args[0] if args else None
        if m is None or self._inner_head or not isinstance(x, torch.Tensor) or not x.is_floating_point() \
                or x.ndim not in (2, 3) or not self._has_linear(module):
            return
        if self._outside_head is None:
            self._outside_head = weakref.ref(module)
        if self.w.sampling():
            self._spread_into(m.head_input_spread, x)
            self._padded_pick(x)
        if m.head_input_where is None or (not x.requires_grad and not m.head_input_detached):
            self._note_head_call(x)

    def pooled_vectors(self, x: torch.Tensor) -> None:
        """A sentence-embedding model's pooled vectors, sampled training steps (from :mod:`.sentence`, inside its
        guard): what its similarity reads, measured as a head's input is when the model has no head of its own."""
        if self.w.s.model is not None and not self._inner_head:
            self._spread_into.__wrapped__(self, self.w.s.model.head_input_spread, x)
            self._padded_pick.__wrapped__(self, x)

    def _has_linear(self, module: nn.Module) -> bool:
        """``module`` is or holds an ``nn.Linear`` (asked once per module: a loss module or dropout is no head)."""
        key = id(module)
        known = self._linear_modules.get(key)
        if known is None or known[0]() is not module:
            known = (weakref.ref(module), any(isinstance(sub, nn.Linear) for sub in module.modules()))
            self._linear_modules[key] = known
        return known[1]

    @guarded
    def _padded_pick(self, x: torch.Tensor) -> None:
        """Sampled steps: the share of rows whose head input is the encoder's vector at a padded position.

        Each row of the head's input is compared with every position of the same row of the last encoder output
        (cosine over the entries the input did not zero, so that dropout between the two does not hide a copy);
        a row whose best match is exact (> ``PICKED_COSINE``) was picked from that position.
        """
        held, self._hidden = self._hidden, None
        hidden = held[0]() if held is not None else None
        mask = held[1]() if held is not None and held[1] is not None else None
        if hidden is None or mask is None or x.ndim != 2 or hidden.ndim != 3 or hidden.shape[0] != x.shape[0] \
                or hidden.shape[-1] != x.shape[-1] or tuple(mask.shape) != tuple(hidden.shape[:2]):
            return
        pad = ~mask.bool()  # (B, T)
        if not bool(pad.any()):
            return
        xf, hf = x.detach().float(), hidden.detach().float()
        hk = hf * (xf != 0).float()[:, None, :]  # (B, T, H)
        cos = (hk * xf[:, None, :]).sum(-1) / (hk.norm(dim=-1) * xf.norm(dim=-1, keepdim=True)).clamp_min(1e-12)
        best, pos = cos.max(dim=1)  # (B,)
        at_pad = (best > PICKED_COSINE) & pad.gather(1, pos[:, None]).squeeze(1)
        self.w.s.model.head_input_pad_share.add(self.w.s.step, float(at_pad.float().mean()))

    def nograd_encoder(self, module: nn.Module) -> None:
        """An encoder ran without gradients: in a module in training mode after the first step, note where."""
        m = self.w.s.model
        if module.training and m is not None and m.nograd_forward_where is None and self.w.s.step > 0:
            m.nograd_forward_where = where_here(skip=4)

    @guarded
    def init_called(self, tensor: Any) -> None:
        """The user's code ran an ``nn.init`` function on a tensor: remember where."""
        if isinstance(tensor, torch.Tensor) and len(self._init_where) < 4096:
            where = _init_where()
            if where is not None:
                self._init_where[id(tensor)] = where

    @guarded
    def activation_called(self, out: Any, filename: str, line: int) -> None:
        """The user's code applied an activation: remember its autograd node and line (last few)."""
        if self.w._grad and isinstance(out, torch.Tensor) and out.grad_fn is not None and self.w.s.loss is None:
            self._activations.append((out.grad_fn, make_where(filename, line)))

    def bounded_called(self, out: Any, name: str, lo: float, hi: float) -> None:
        """The user's code computed a score of known range (a cosine similarity): remember its autograd node."""
        if self.w._grad and isinstance(out, torch.Tensor) and out.grad_fn is not None and self.w.s.loss is None:
            self._bounded.append((out.grad_fn, (name, lo, hi)))

    def bounded_range(self, fn: Any) -> tuple[str, float, float] | None:
        """(name, low, high) when the loss input made by autograd node ``fn`` is such a score, through views."""
        known = {id(node): rng for node, rng in self._bounded}
        self._bounded.clear()
        for _ in range(4):  # a squeeze or a view between the score and the loss
            if fn is None:
                return None
            if id(fn) in known:
                return known[id(fn)]
            if not type(fn).__name__.startswith(("View", "Squeeze", "Unsqueeze", "Reshape", "Clone", "ToCopy")):
                return None
            fn = fn.next_functions[0][0] if fn.next_functions else None
        return None

    def activation_where(self, fn: Any) -> Any:
        """Where the user applied an activation that feeds the loss input made by autograd node ``fn``, if they did."""
        known = {id(node): where for node, where in self._activations}
        self._activations.clear()  # the nodes are no longer needed: drop them with their graph
        depth = 0
        while fn is not None and depth < 8:
            if id(fn) in known:
                return known[id(fn)]
            nxt = [f for f, _ in fn.next_functions if f is not None]
            fn, depth = (nxt[0] if nxt else None), depth + 1
        return None

    @guarded
    def model_built(self, model: nn.Module) -> None:
        self.w.forward.widen()  # a new model: find its calls with hooks on every module until the next step
        if getattr(model, "_defib_where", None) is None:
            model._defib_where = where_here(skip=3)

    def finalize(self) -> None:
        """Name the parameters the user's ``nn.init`` calls touched (by id until now)."""
        m = self.w.s.model
        if m is not None and self._init_where:
            names = self.names()
            m.init_where = {names[i][0]: w for i, w in self._init_where.items() if i in names}


def _init_where() -> Any:
    """The user's line behind an ``nn.init`` call.

    When the init function was called through ``model.apply(fn)``, the line
    to change is the ``apply`` call, not the body of ``fn``.
    """
    frame = user_frame(2)
    if frame is None:
        return None
    outer, via_apply = frame.f_back, False
    while outer is not None and not is_user_file(outer.f_code.co_filename):
        via_apply = via_apply or (outer.f_code.co_name == "apply" and "torch" in outer.f_code.co_filename)
        outer = outer.f_back
    if via_apply and outer is not None:
        frame = outer
    return make_where(frame.f_code.co_filename, frame.f_lineno)
