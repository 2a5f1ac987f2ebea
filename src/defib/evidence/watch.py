"""The framework-free watch core: events in, :class:`~defib.signals.Signals` out.

Hooks (``hooks.py``), the one-line ``defib.watch`` and the Trainer/Lightning
callbacks all translate what they see into calls on one :class:`Watcher`.
Every event handler observes detached tensors under ``no_grad``, never
changes what it is given, and is wrapped by :func:`guarded`, so a bug in
defib becomes an internal-error finding instead of a crash in the user's run.
Memory stays bounded: series downsample, windows are rings, sets of
parameter ids are bounded by the model.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
import traceback
import weakref
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from defib.evidence import distributed
from defib.evidence import params as P
from defib.evidence.callsite import is_user_file, make_where, user_frame, where_here, where_made
from defib.evidence.stats import Moments, Series, Window, rel_spread
from defib.rules.fmt import num
from defib.signals.run import (CLASS_LOSSES, MAX_INTERNAL_ERRORS, MAX_PLOTTED_CLASSES, QUANTILES, MULTILABEL_LOSSES, REGRESSION_LOSSES, DataSignals, LossSignals, ModelSignals, OptimSignals, PredSignals, Signals)

# grad_fn names that only reshape or copy: walked through to find what produced the loss input
_PASS_THROUGH = ("View", "Squeeze", "Unsqueeze", "Reshape", "Expand", "Select", "Slice", "Clone", "ToCopy",
                 "Transpose", "Permute", "Alias", "Unsafe", "Index", "Flatten", "Contiguous")
MAX_LOADERS = 256  # DataLoaders remembered before the dead ones are dropped
MAX_STEP_LOSSES = 1024  # loss values kept between two optimizer steps (bounded if no step ever comes)


def guarded(method: Callable) -> Callable:
    """Run an event handler; on any exception, record it and carry on."""

    @functools.wraps(method)
    def run(self: "Watcher", *args: Any, **kwargs: Any) -> Any:
        if self._inside:
            return None
        self._inside = True
        self._grad = torch.is_grad_enabled()  # the user's mode, before defib's no_grad
        try:
            with torch.no_grad():
                return method(self, *args, **kwargs)
        except Exception as exc:  # defib must never stop the user's training
            self.record_internal_error(method.__name__, exc)
            return None
        finally:
            self._inside = False

    return run


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


def _label_where(loss_where: Any) -> Any:
    """The line that produced the targets of the loss call at ``loss_where`` (see provenance.label_line)."""
    from defib.evidence.provenance import label_line

    if loss_where is None:
        return None
    path = os.path.abspath(loss_where.file)
    line = label_line(path, loss_where.line)
    return make_where(path, line) if line else None


def _loss_module_where(depth: int = 8) -> Any:
    """The construction line of the loss module whose forward made this functional loss call, if any."""
    frame = sys._getframe(1)
    for _ in range(depth):
        frame = frame.f_back
        if frame is None:
            return None
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "forward" else None
        if isinstance(owner, nn.modules.loss._Loss):
            return getattr(owner, "_defib_where", None)
    return None


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().reshape(-1).cpu().numpy()


def _grad_fn_chain(t: torch.Tensor, depth: int = 6) -> tuple[str, ...]:
    names: list[str] = []
    fn = t.grad_fn
    while fn is not None and len(names) < depth:
        name = type(fn).__name__
        names.append(name)
        if not name.startswith(_PASS_THROUGH):
            break  # the op that produced the values, past any reshapes
        nxt = [f for f, _ in fn.next_functions if f is not None]
        fn = nxt[0] if nxt else None
    return tuple(names)


class Watcher:
    """Collects signals from one training run.

    ``sample_every``: expensive measurements (per-group gradient norms, update
    ratios, representation spread) run on the first steps and then every this
    many optimizer steps. ``window``: how many recent predictions define the
    current prediction spread. ``evaluate_every``: how often the rules run
    during training, so a flatline is announced when it happens.
    """

    def __init__(self, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None, *,
                 sample_every: int = 10, window: int = 256, evaluate_every: int = 10,
                 announce: Callable[[str], None] | None = None):
        self.sample_every = sample_every
        self.evaluate_every = evaluate_every
        self.announce = announce
        self.s = Signals()
        self.s.config = {"sample_every": sample_every, "window": window}
        self._inside = False
        self._grad = True
        self._roots: list[weakref.ref] = []
        self._depth = 0
        self._root_active: nn.Module | None = None
        self._optimizers: dict[int, dict[str, Any]] = {}
        self._main_opt: weakref.ref | None = None
        self._names: dict[int, tuple[str, nn.Parameter]] = {}
        self._opt_ids: set[int] = set()
        self._ever_grad: set[int] = set()
        self._ever_nonzero: set[int] = set()
        self._pred_window = Window(window)
        self._batch_pred_std: deque = deque(maxlen=16)  # within-batch prediction std, recent batches
        self._target_window = Window(window)
        self._targets = Moments()
        self._label_counts: Counter = Counter()
        self._pred_classes: Window = Window(window)
        self._batch_means: list[float] = []
        self._batch_vars: list[float] = []
        self._step_losses: list[float] = []
        self._loss_window: Window = Window(32)  # steps: long enough to average out batch noise
        self._backward_since_step = 0
        self._zeroed_after_backward = False
        self._first_micro_norm: float | None = None
        self._probe: nn.Parameter | None = None
        self._not_cleared = 0
        self._snap: dict[int, tuple[str, nn.Parameter, torch.Tensor]] = {}  # id -> (group, param, copy before the step)
        self._head_hooks: list[Any] = []
        self._loaders: dict[int, dict[str, Any]] = {}
        self._active_loader: dict | None = None  # the loader iterated last, until a forward shows its use
        self._first_fired: dict[str, int] = {}
        self._flatline_announced = False
        self._step_callbacks: list[Callable[[int], None]] = []
        self._train_mode_steps = 0
        self._backward_values: list[float] = []
        self._last_raw_loss = 1.0  # the loss function's own output, before any per-example normalisation
        self.training_args_where = None  # set by the TrainingArguments patch
        self.fix: Any = None  # a candidate fix (defib.fixes) applied by the wrappers, only in a --confirm rerun
        self._init_where: dict[int, Any] = {}
        # (autograd node, where) of the user's recent activation calls, until the loss is first seen
        self._activations: deque = deque(maxlen=8)
        self._initial_preds: list[float] = []
        self.started = time.time()
        if model is not None:
            self._add_root(model)
        if optimizer is not None:
            self.optimizer_created(optimizer, where=None)

    # ------------------------------------------------------------------ errors
    def record_internal_error(self, where: str, exc: BaseException) -> None:
        if len(self.s.internal_errors) < MAX_INTERNAL_ERRORS:
            tb = traceback.extract_tb(exc.__traceback__)
            last = tb[-1] if tb else None
            at = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
            self.s.internal_errors.append(f"{where}: {type(exc).__name__}: {exc}{at}")

    def apply_fix(self, hook: str, *args: Any, default: Any = None) -> Any:
        """Call the confirmation fix's ``hook``; a fix that raises is reported, never the user's problem."""
        if self.fix is None:
            return default
        try:
            return getattr(self.fix, hook)(*args)
        except Exception as exc:
            self.record_internal_error(f"fix.{hook}", exc)
            return default

    # ------------------------------------------------------------------ model
    def roots(self) -> list[nn.Module]:
        return [m for m in (r() for r in self._roots) if m is not None]

    def _add_root(self, module: nn.Module) -> None:
        if any(r() is module for r in self._roots):
            return
        self._roots.append(weakref.ref(module))
        self._names = {}  # rebuilt lazily
        if self.fix is not None:  # a confirmation rerun: the fix may change the model's inputs from its next call
            self._head_hooks.append(module.register_forward_pre_hook(self._fix_model_inputs, with_kwargs=True))
        if self.s.model is None:
            self.s.model = ModelSignals(name=type(module).__name__)
            self._inspect_model(module)

    def _fix_model_inputs(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        """Let the confirmation fix rewrite the top-level model's inputs (the global pre-hook sees no kwargs)."""
        return self.apply_fix("model_inputs", module, args, kwargs, default=None)

    def _inspect_model(self, root: nn.Module) -> None:
        m = self.s.model
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
            m.head_params = [n for n, _ in root.named_parameters() if P.group_of(n) == "head"]
            w = first.weight.detach().float()
            m.head_fan_in = int(w.shape[1]) if w.ndim == 2 else None
            m.head_init_nonfinite = not bool(torch.isfinite(w).all())
            finite = w[torch.isfinite(w)]
            m.head_init_std = float(finite.std()) if finite.numel() > 1 else None
            m.head_init_absmax = float(finite.abs().max()) if finite.numel() else None
            self._head_hooks.append(first.register_forward_pre_hook(self._head_input))
        cfg = P.find_config(root)
        if cfg is not None and self._data().pad_token_id is None:
            self._data().pad_token_id = getattr(cfg, "pad_token_id", None)

    def _head_input(self, module: nn.Module, args: tuple) -> None:
        if not (args and isinstance(args[0], torch.Tensor) and torch.is_grad_enabled() and module.training):
            return
        if self._sampling():
            self._spread_into(self.s.model.head_input_spread, args[0])
        m = self.s.model
        if m.head_input_where is None or (not args[0].requires_grad and not m.head_input_detached):
            self._note_head_call(args[0].requires_grad)

    @guarded
    def _note_head_call(self, input_requires_grad: bool) -> None:
        m = self.s.model
        where = where_here(skip=3)
        if m.head_input_where is None:
            m.head_input_where = where
        if not input_requires_grad and not m.head_input_detached:
            m.head_input_detached = True
            m.head_input_where = where

    @guarded
    def _spread_into(self, series: Series, x: torch.Tensor) -> None:
        x = x.detach().float()
        if x.ndim == 3:
            x = x[:, 0]
        if x.ndim == 2 and x.shape[0] > 1:
            series.add(self.s.step, rel_spread(x.cpu().numpy()))

    def detach(self) -> None:
        for h in self._head_hooks:
            h.remove()
        self._head_hooks.clear()

    def _sampling(self) -> bool:
        step = self.s.step
        return step < 3 or step % self.sample_every == 0

    @guarded
    def init_called(self, tensor: Any) -> None:
        """The user's code ran an ``nn.init`` function on a tensor: remember where."""
        if isinstance(tensor, torch.Tensor) and len(self._init_where) < 4096:
            where = _init_where()
            if where is not None:
                self._init_where[id(tensor)] = where

    @guarded
    def activation_called(self, out: Any, frame: Any) -> None:
        """The user's code applied an activation: remember its autograd node and line (last few)."""
        if self._grad and isinstance(out, torch.Tensor) and out.grad_fn is not None and self.s.loss is None:
            self._activations.append((out.grad_fn, make_where(frame.f_code.co_filename, frame.f_lineno)))

    @guarded
    def loss_module_created(self, module: nn.Module) -> None:
        """``nn.MSELoss(reduction="sum")`` and friends: remember the line, for findings about the reduction."""
        module._defib_where = where_here(keyword="reduction", skip=4, value=getattr(module, "reduction", None))

    @guarded
    def model_built(self, model: nn.Module) -> None:
        if getattr(model, "_defib_where", None) is None:
            model._defib_where = where_here(skip=3)

    # ------------------------------------------------------------------ forward
    # The two module hooks run for every submodule call (about a hundred per
    # BERT forward), so they stay outside ``guarded``: its no_grad context costs
    # more than the work. They only count nesting depth and hand the two calls
    # that matter (an encoder's output, the outermost module) to the guarded
    # handler; an integer update and a getattr cannot raise.
    def forward_pre(self, module: nn.Module, args: tuple) -> None:
        self._depth += 1

    def forward_post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any = None) -> None:
        # output is missing when the forward raised (always_call=True still calls the hook)
        self._depth = max(0, self._depth - 1)
        if self._depth == 0 or getattr(output, "last_hidden_state", None) is not None:
            self._forward_out(module, args, kwargs, output)

    @guarded
    def _forward_out(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        # global pre-hooks get no kwargs, so the inputs are read here, after the call
        hidden = getattr(output, "last_hidden_state", None)
        if isinstance(hidden, torch.Tensor) and hidden.ndim == 3:
            if self._grad and self._sampling():
                self._encoder_output(hidden, self._find_inputs(args, kwargs)[1])
            elif not self._grad and module.training and self.s.model is not None \
                    and self.s.model.nograd_forward_where is None and self.s.step > 0:
                self.s.model.nograd_forward_where = where_here(skip=4)
        if self._depth == 0:
            self._root_call(module, args, kwargs)

    def _root_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        ids, mask = self._find_inputs(args, kwargs)
        if ids is None:
            return
        self._add_root(module)
        self._root_active = module
        if not self._grad or not module.training:
            self._active_loader = None  # the loader iterated last feeds an evaluation, not training
            return
        self._adopt_loader()
        self._check_batch(ids, mask)

    @staticmethod
    def _find_inputs(args: tuple, kwargs: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """input_ids and attention_mask, by keyword, in a dict, or as the first positionals."""
        src: dict = dict(kwargs)
        if args and isinstance(args[0], Mapping):  # a dict or a tokenizer's BatchEncoding
            src.update(args[0])
        ids = src.get("input_ids")
        mask = src.get("attention_mask")
        if ids is None and args and isinstance(args[0], torch.Tensor) and args[0].ndim == 2 \
                and not args[0].is_floating_point():
            ids = args[0]
            if mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].shape == ids.shape:
                mask = args[1]
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point():
            return None, None
        return ids, mask if isinstance(mask, torch.Tensor) else None

    def _data(self) -> DataSignals:
        if self.s.data is None:
            self.s.data = DataSignals()
        return self.s.data

    def _check_batch(self, ids: torch.Tensor, mask: torch.Tensor | None) -> None:
        d = self._data()
        d.batches += 1
        d.seq_len.add(self.s.step, ids.shape[1])
        pad = d.pad_token_id
        if pad is not None:
            is_pad = ids == pad
            # a sequence of pads at the end of a row, not an id that merely equals pad
            has_pad = bool(is_pad[:, -1].any())
            if has_pad:
                d.batches_with_pad += 1
                if mask is None:
                    d.batches_pad_no_mask += 1
                    if d.mask_where is None:
                        d.mask_where = where_here(keyword="attention_mask", skip=4)
                else:
                    m = mask.bool() if mask.dtype != torch.bool else mask
                    if m.shape == ids.shape:
                        if bool(m.all()):
                            d.batches_mask_all_ones_with_pad += 1
                            d.mask_where = d.mask_where or where_here(keyword="attention_mask", skip=4)
                        elif float((m == is_pad).float().mean()) > 0.9:
                            d.batches_mask_inverted += 1
                            d.mask_where = d.mask_where or where_here(keyword="attention_mask", skip=4)
        if ids.shape[0] > 1:
            uniq = torch.unique(ids, dim=0).shape[0]
            share = 1 - uniq / ids.shape[0]
            prev = d.dup_rows_share or 0.0
            d.dup_rows_share = prev + (share - prev) / d.batches

    def _encoder_output(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> None:
        m = self.s.model
        if m is None:
            return
        h = hidden.detach().float()  # (B, T, H)
        if h.shape[0] > 1:
            m.cls_spread.add(self.s.step, rel_spread(h[:, 0].cpu().numpy()))
        if mask is not None and mask.shape == h.shape[:2]:
            tokens = h[mask.bool()]
        else:
            tokens = h.reshape(-1, h.shape[-1])
        if tokens.shape[0] > 512:
            tokens = tokens[torch.linspace(0, tokens.shape[0] - 1, 512).long()]
        m.token_spread.add(self.s.step, rel_spread(tokens.cpu().numpy()))

    # ------------------------------------------------------------------ loss
    @guarded
    def loss_call(self, fn: str, input: Any, target: Any, result: Any, kwargs: dict) -> None:
        if not (self._grad and isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor)):
            return
        if not input.requires_grad and not torch.is_tensor(result):
            return
        family = ("regression" if fn in REGRESSION_LOSSES else "classification" if fn in CLASS_LOSSES
                  else "multilabel" if fn in MULTILABEL_LOSSES else None)
        if family is None:
            return
        ls = self.s.loss
        if ls is None or ls.fn != fn:
            if ls is not None and ls.calls > 5:
                return  # a second loss function: the first one is the training loss
            ls = self.s.loss = LossSignals(fn=fn, family=family)
            ls.where = where_here(skip=4)
            ls.reduction = str(kwargs.get("reduction", "mean"))
            ls.input_requires_grad = bool(input.requires_grad)
            ls.producer = _grad_fn_chain(input)
            ls.producer_where = self._activation_where(input)
            ls.module_where = _loss_module_where()
            ls.label_where = _label_where(ls.where)
        ls.calls += 1
        ls.input_shape, ls.target_shape = tuple(input.shape), tuple(target.shape)
        ls.input_dtype, ls.target_dtype = str(input.dtype).replace("torch.", ""), str(target.dtype).replace("torch.", "")
        ls.weighted = ls.weighted or kwargs.get("weight") is not None or kwargs.get("pos_weight") is not None
        if family != "classification" and input.shape != target.shape and input.numel() != 1:
            ls.broadcast_calls += 1
        if torch.is_tensor(result) and result.numel() == 1:
            value = self._last_raw_loss = float(result.detach())
            if ls.reduction == "sum" and target.numel():
                value /= target.numel() if family != "classification" else max(1, target.shape[0])  # per example
            if math.isfinite(value):
                ls.first = value if ls.first is None else ls.first
                self._step_losses.append(value)
                del self._step_losses[:-MAX_STEP_LOSSES]
            elif ls.nonfinite_step is None:
                ls.nonfinite_step = self.s.step + 1
                self._optim().nonfinite.setdefault("loss", self.s.step + 1)
        self._record_predictions(family, input.detach(), target.detach())

    def _activation_where(self, t: torch.Tensor) -> Any:
        """Where the user applied an activation that feeds this loss input, if they did."""
        known = {id(node): where for node, where in self._activations}
        self._activations.clear()  # the nodes are no longer needed: drop them with their graph
        fn, depth = t.grad_fn, 0
        while fn is not None and depth < 8:
            if id(fn) in known:
                return known[id(fn)]
            nxt = [f for f, _ in fn.next_functions if f is not None]
            fn, depth = (nxt[0] if nxt else None), depth + 1
        return None

    def _record_predictions(self, family: str, x: torch.Tensor, y: torch.Tensor) -> None:
        task = "regression" if family == "regression" else family
        if self.s.preds is None:
            self.s.preds = PredSignals(task=task)
            self.s.task = task
        p = self.s.preds
        if family == "regression":
            xs, ys = _np(x), _np(y)
            self._pred_window.extend(xs)
            if xs.size >= 2:
                self._batch_pred_std.append(float(np.std(xs)))
            self._note_targets(ys)
            if p.n_seen < 64:
                self._initial_preds.extend(xs.tolist())
            p.n_seen += xs.size
        elif family == "classification":
            if x.ndim < 2:
                return
            k = x.shape[1]
            logits = x.movedim(1, -1).reshape(-1, k).float()
            p.n_classes = k
            self._pred_classes.extend(logits.argmax(-1).cpu().numpy().astype(np.float64))
            ls = self.s.loss
            if y.is_floating_point() and y.shape == x.shape:  # soft / one-hot targets
                labels = y.movedim(1, -1).reshape(-1, k).argmax(-1)
                # the targets noted below are argmax ids: keep the soft values' own range for the rules
                top = float(y.float().max())
                ls.soft_target_max = top if ls.soft_target_max is None else max(ls.soft_target_max, top)
            else:
                labels = y.reshape(-1)
            lab = labels.cpu().numpy()
            self._note_targets(lab.astype(np.float64))
            self._label_counts.update(lab.astype(np.int64).tolist())
            p.n_seen += logits.shape[0]
            rows = logits.sum(-1)
            ok = (logits.min(-1).values >= 0) & ((rows - 1).abs() < 1e-3)
            share = float(ok.float().mean())
            ls.prob_rows_share = share if ls.prob_rows_share is None else 0.9 * ls.prob_rows_share + 0.1 * share
            if ls.fn == "nll_loss":
                logp = float((logits.logsumexp(-1).abs() < 1e-3).float().mean())
                ls.logprob_rows_share = logp if ls.logprob_rows_share is None else \
                    0.9 * ls.logprob_rows_share + 0.1 * logp
        else:  # multilabel
            xs, ys = _np(x), _np(y)
            self._pred_window.extend(xs)
            self._note_targets(ys)
            p.n_seen += xs.size
            ls = self.s.loss
            if ls.fn == "binary_cross_entropy_with_logits":
                share = float(((xs >= 0) & (xs <= 1)).mean())
                ls.unit_interval_share = share if ls.unit_interval_share is None else \
                    0.9 * ls.unit_interval_share + 0.1 * share

    def _note_targets(self, ys: np.ndarray) -> None:
        self._targets.add(ys.astype(np.float64))
        self._target_window.extend(ys)
        fin = ys[np.isfinite(ys)]
        if fin.size < ys.size:
            self.s.preds.target_nonfinite += int(ys.size - fin.size)
        if fin.size:
            self._batch_means.append(float(fin.mean()))
            self._batch_vars.append(float(fin.var()) if fin.size > 1 else math.nan)
            if len(self._batch_means) > 4096:
                del self._batch_means[:2048]
                del self._batch_vars[:2048]
            p = self.s.preds
            integral = bool(np.all(fin == np.round(fin)))
            p.target_integer = integral if p.target_integer is None else (p.target_integer and integral)

    def loss_failed(self, fn: str, input: Any, target: Any, kwargs: dict, exc: BaseException) -> None:
        """The loss raised: keep what it was given, so the crash gets a diagnosis."""
        self.loss_call(fn, input, target, None, kwargs)
        if self.s.loss is not None and self.s.loss.fn == fn:
            self.s.loss.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            self._refresh_preds()

    @guarded
    def _refresh_preds(self) -> None:
        """Copy the labels and targets seen into the signals now: after a crashed loss no step will."""
        self._update_preds(self.s.step)

    # ------------------------------------------------------------------ backward / zero_grad
    def _optim(self) -> OptimSignals:
        if self.s.optim is None:
            self.s.optim = OptimSignals()
        return self.s.optim

    @guarded
    def backward_pre(self, tensor: torch.Tensor) -> None:
        o = self._optim()
        o.backward_calls += 1
        if o.backward_where is None:
            o.backward_where = where_here(skip=4)
        if tensor.grad_fn is None and o.leaf_loss_where is None:  # a loss rebuilt outside the graph
            o.leaf_loss_where = where_made("backward", skip=4) or where_here(skip=4)
        if tensor.numel() == 1:
            v = float(tensor.detach())
            self._backward_values.append(v)
            del self._backward_values[:-MAX_STEP_LOSSES]
            if not math.isfinite(v):
                o.nonfinite.setdefault("loss", self.s.step + 1)
        if self._backward_since_step == 0 and self._probe is not None and self.s.step > 0:
            g = self._probe.grad
            if g is not None and bool((g != 0).any()):
                self._not_cleared += 1
        self._zeroed_after_backward = False

    @guarded
    def backward_post(self, tensor: torch.Tensor) -> None:
        self._backward_since_step += 1
        if self._backward_since_step == 1 and self._probe is not None and self._probe.grad is not None:
            self._first_micro_norm = float(self._probe.grad.detach().float().norm())

    @guarded
    def zero_grad_call(self, owner: Any) -> None:
        o = self._optim()
        o.zero_grad_calls += 1
        if o.zero_grad_where is None:
            o.zero_grad_where = where_here(skip=4)
        if self._backward_since_step > 0:
            self._zeroed_after_backward = True
            if o.late_zero_grad_where is None:
                o.late_zero_grad_where = where_here(skip=4)

    # ------------------------------------------------------------------ optimizer
    @guarded
    def optimizer_created(self, optimizer: torch.optim.Optimizer, where: Any = "auto", lr_where: Any = "auto",
                          owner: str | None = None) -> None:
        if where == "auto":
            where = where_here(skip=4)
        if lr_where == "auto":
            first = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
            lr_where = where_here(keyword="lr", skip=4, value=float(first) if first is not None else None)
            if self.training_args_where is not None and _built_by_trainer():
                lr_where = where = self.training_args_where
        self._optimizers[id(optimizer)] = {
            "ref": weakref.ref(optimizer), "where": where, "lr_where": lr_where,
            "lr": [float(g.get("lr", math.nan)) if not torch.is_tensor(g.get("lr")) else float(g["lr"])
                   for g in optimizer.param_groups],
            "name": owner or type(optimizer).__name__,
        }

    def _main(self, optimizer: torch.optim.Optimizer) -> bool:
        """The first optimizer that steps is the one watched (others: GANs, probes)."""
        if self._main_opt is None:
            self._main_opt = weakref.ref(optimizer)
            o = self._optim()
            info = self._optimizers.get(id(optimizer))
            if info is None:
                self.optimizer_created.__wrapped__(self, optimizer, where=None, lr_where=None)
                info = self._optimizers[id(optimizer)]
            o.optimizer, o.where, o.lr_where, o.lr_initial = info["name"], info["where"], info["lr_where"], info["lr"]
            self._opt_ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
        return self._main_opt() is optimizer

    def _name_map(self) -> dict[int, tuple[str, nn.Parameter]]:
        if not self._names:
            self._names = P.named_params(self.roots())
        return self._names

    def _opt_params(self, optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
        return [p for g in optimizer.param_groups for p in g["params"]]

    @guarded
    def step_pre(self, optimizer: torch.optim.Optimizer, args: tuple = (), kwargs: dict | None = None) -> None:
        if self.fix is not None and (self._main_opt is None or self._main_opt() is optimizer):
            self.apply_fix("before_step", optimizer, self)  # first: the step and what defib records see the fix
        if not self._main(optimizer):
            return
        o = self._optim()
        step = self.s.step + 1
        if o.step_where is None:
            o.step_where = where_here(skip=4)
        o.lr.add(step, max(float(g["lr"]) for g in optimizer.param_groups))
        params = self._opt_params(optimizer)
        names = self._name_map()
        if step == 1:
            self._first_step(optimizer, params, names)
        # gradient accounting
        if self._backward_since_step > 0:
            o.micro_batches.append(self._backward_since_step)
            del o.micro_batches[:-64]
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            o.steps_with_grads += 1
        # zero_grad() between backward() and step(); grads that never arrive at all are a cut graph (O006)
        if self._backward_since_step > 0 and self._zeroed_after_backward and \
                (not grads or not any(bool(g.any()) for g in grads[:4])):
            o.steps_zeroed_before_step += 1
        if self._probe is not None and self._probe.grad is not None and self._first_micro_norm:
            if self._backward_since_step > 1:
                o.accum_growth = float(self._probe.grad.float().norm()) / self._first_micro_norm
        if step < 3 or step % self.sample_every == 0:
            self._sample_grads(step, params, names)
        self._snapshot(step, params, names)
        # losses of this step
        if self._step_losses:
            value = float(np.mean(self._step_losses))
            if self.s.loss is not None:
                self.s.loss.values.add(step, value)
            self._loss_window.extend(np.array([value]))
        if self._backward_values and self._step_losses and self.s.loss is not None:
            ratio = abs(self._backward_values[-1]) / max(abs(self._last_raw_loss), 1e-30)
            self.s.loss.scale_factor = ratio
        self._step_losses.clear()
        self._backward_values.clear()
        root = self._root_active
        if root is not None and root.training:
            self._train_mode_steps += 1

    def _first_step(self, optimizer, params, names) -> None:
        o = self._optim()
        all_params = [p for _, p in names.values()]
        o.n_params = sum(p.numel() for p in all_params)
        o.n_trainable = sum(p.numel() for p in all_params if p.requires_grad)
        o.frozen = [n for n, p in names.values() if not p.requires_grad]
        rms = [float(p.detach().float().pow(2).mean().sqrt()) for n, p in names.values()
               if p.ndim == 2 and P.group_of(n).startswith(("layer.", "embeddings"))]
        o.encoder_weight_rms = float(np.median(rms)) if rms else None
        if o.frozen:
            o.frozen_where = self._freeze_where()
        o.param_dtypes = sorted({str(p.dtype).replace("torch.", "") for p in params})
        heads = [p for i, (n, p) in names.items() if P.group_of(n) == "head" and p.requires_grad and i in self._opt_ids]
        cands = heads or [p for p in params if p.requires_grad]
        self._probe = min(cands, key=lambda p: p.numel()) if cands else None
        if self._probe is not None and self._backward_since_step >= 1 and self._probe.grad is not None \
                and self._first_micro_norm is None:
            self._first_micro_norm = float(self._probe.grad.float().norm())

    def _freeze_where(self) -> Any:
        """Search the user's files defib has seen (the script first) for the line that freezes parameters."""
        from defib.evidence.provenance import freeze_line

        main = getattr(sys.modules.get("__main__"), "__file__", None)
        seen = [main] + [getattr(getattr(r, "_defib_where", None), "file", None) for r in self.roots()]
        seen += [info["where"].file for info in self._optimizers.values() if info.get("where") is not None]
        files = list(dict.fromkeys(os.path.abspath(f) for f in seen if f and is_user_file(os.path.abspath(f))))
        opt_lines = {os.path.abspath(i["where"].file): i["where"].line
                     for i in self._optimizers.values() if i.get("where") is not None}
        found = freeze_line(files, opt_lines)
        return make_where(*found) if found else None

    def _sample_grads(self, step: int, params: list[nn.Parameter], names: dict) -> None:
        o = self._optim()
        by_group: dict[str, list[torch.Tensor]] = {}
        for p in params:
            if p.grad is not None:
                self._ever_grad.add(id(p))
                if step <= 2 or id(p) not in self._ever_nonzero:
                    if bool(p.grad.any()):
                        self._ever_nonzero.add(id(p))
                name = names.get(id(p), ("?",))[0]
                by_group.setdefault(P.group_of(name), []).append(p.grad.detach())
        total_sq = 0.0
        for group, gs in by_group.items():
            norms = torch._foreach_norm([g.float() for g in gs])
            sq = float(torch.stack(norms).pow(2).sum())
            total_sq += sq
            o.grad_norm.setdefault(group, Series()).add(step, math.sqrt(sq))
        if by_group:
            o.grad_total.add(step, math.sqrt(total_sq))
            if not math.isfinite(total_sq):
                o.nonfinite.setdefault("grad", step)
        # parameters that get gradients but are in no optimizer
        for pid, (name, p) in names.items():
            if pid not in self._opt_ids and p.grad is not None and name not in o.not_in_optimizer:
                o.not_in_optimizer.append(name)
        o.groups_with_grad = sorted(by_group, key=P.group_order)

    def _snapshot(self, step: int, params: list[nn.Parameter], names: dict) -> None:
        """Before a sampled step, copy one small tensor per group to measure the update."""
        self._snap.clear()
        if not (step < 3 or step % self.sample_every == 0):
            return
        chosen: dict[str, nn.Parameter] = {}
        for p in params:
            if p.grad is None or p.ndim < 2 or p.numel() > 2_000_000:
                continue
            group = P.group_of(names.get(id(p), ("?",))[0])
            if group not in chosen or p.numel() > chosen[group].numel():
                chosen[group] = p
        for group, p in chosen.items():
            self._snap[id(p)] = (group, p, p.detach().clone())

    @guarded
    def step_post(self, optimizer: torch.optim.Optimizer, args: tuple = (), kwargs: dict | None = None) -> None:
        if self._main_opt is None or self._main_opt() is not optimizer:
            return
        if self.fix is not None:
            self.apply_fix("after_step", optimizer)
        self.s.step += 1
        step = self.s.step
        due = step <= 3 or step % self.evaluate_every == 0
        try:
            self._record_step(step)
        finally:
            if due:  # under torchrun every rank reaches this at the same steps, whatever failed above
                distributed.reduce_signals(self.s)
        if due:
            self.evaluate()
        for cb in list(self._step_callbacks):
            cb(step)

    def _record_step(self, step: int) -> None:
        o = self._optim()
        o.steps = step
        if self._snap:
            for group, p, before in self._snap.values():
                after = p.detach()
                denom = float(before.float().norm())
                delta = float((after.float() - before.float()).norm())
                if not math.isfinite(delta):
                    o.nonfinite.setdefault("weight", step)
                if denom > 0:
                    o.update_ratio.setdefault(group, Series()).add(step, delta / denom)
            self._snap.clear()
        self._backward_since_step = 0
        self._zeroed_after_backward = False
        self._update_preds(step)

    def _update_preds(self, step: int) -> None:
        p = self.s.preds
        if p is None:
            return
        t = self._targets
        p.target_mean, p.target_std = t.mean if t.n else None, t.std if t.n else None
        p.target_min, p.target_max = (t.lo, t.hi) if t.n else (None, None)
        if p.task == "classification":
            preds = self._pred_classes.array().astype(np.int64)
            p.pred_counts = dict(Counter(preds.tolist()))
            p.label_counts = dict(self._label_counts)
            p.spread.add(step, _entropy_share(p.pred_counts, p.label_counts))
            if self._sampling() and preds.size:
                _add_class_shares(p.class_share, step, p.pred_counts, preds.size)
        else:
            w = self._pred_window.array()
            w = w[np.isfinite(w)]
            if w.size:
                p.window_std, p.window_mean = float(w.std()), float(w.mean())
                p.window_min, p.window_max = float(w.min()), float(w.max())
                if p.target_std and self._batch_pred_std:
                    # within-batch spread: blind to the drift of a bias chasing batch means
                    p.batch_std = float(np.mean(self._batch_pred_std))
                    p.spread.add(step, p.batch_std / p.target_std)
                if self._sampling():
                    _add_quantiles(p.pred_quantiles, step, w)
                    ys = self._target_window.array()
                    _add_quantiles(p.target_quantiles, step, ys[np.isfinite(ys)])
            if p.initial_std is None and len(self._initial_preds) >= 2:
                p.initial_std = float(np.std(self._initial_preds))
                p.initial_mean = float(np.mean(self._initial_preds))
        if len(self._loss_window):
            p.loss_window.add(step, float(self._loss_window.array().mean()))
        base = self.baseline()
        if base is not None:
            p.baseline.add(step, base)
            if self.s.loss is not None:
                self.s.loss.baseline = base

    def _update_slow_stats(self) -> None:
        """Statistics only the rules read: computed when they run, not at every step."""
        p, t = self.s.preds, self._targets
        if p is None:
            return
        if p.task != "classification":
            p.recent_preds = self._pred_window.array().tolist()
            p.recent_targets = self._target_window.array().tolist()
        d = self._data()
        if len(self._batch_means) >= 8 and t.n and t.var > 0:
            vars_ = np.array(self._batch_vars)
            vars_ = vars_[np.isfinite(vars_)]
            d.within_batch_var_ratio = float(vars_.mean() / t.var) if vars_.size else None
            bm = np.array(self._batch_means[-512:])
            if bm.std() > 0:
                d.batch_mean_autocorr = float(np.corrcoef(bm[:-1], bm[1:])[0, 1])

    def baseline(self) -> float | None:
        """Loss of the best constant predictor on the targets seen so far."""
        ls, t = self.s.loss, self._targets
        if ls is None or not t.n:
            return None
        if ls.fn == "mse_loss":
            return t.var
        if ls.fn in ("l1_loss", "smooth_l1_loss", "huber_loss"):
            return float(np.mean(np.abs(self._target_window.array() - t.mean))) if len(self._target_window) else None
        if ls.fn in CLASS_LOSSES:
            counts = np.array(list(self._label_counts.values()), dtype=np.float64)
            q = counts / counts.sum()
            return float(-(q * np.log(q)).sum())
        if ls.fn in MULTILABEL_LOSSES:
            q = min(max(t.mean, 1e-6), 1 - 1e-6)
            return float(-(q * math.log(q) + (1 - q) * math.log(1 - q)))
        return None

    # ------------------------------------------------------------------ data plumbing
    @guarded
    def loader_created(self, loader: Any) -> None:
        sampler = getattr(loader, "sampler", None)
        batch_sampler = getattr(loader, "batch_sampler", None)
        inner = getattr(batch_sampler, "sampler", None)
        name = type(inner or sampler).__name__
        shuffled = {"RandomSampler": True, "SequentialSampler": False}.get(name)
        if len(self._loaders) >= MAX_LOADERS:  # a loader built per batch: forget the dead ones
            self._loaders = {k: v for k, v in self._loaders.items() if v["ref"]() is not None}
        # keyed by id, checked by weakref: a loader used once (iter(DataLoader(...))) dies and its id is reused
        self._loaders[id(loader)] = {"where": where_here(keyword="shuffle", skip=4, value=shuffled), "sampler": name,
                                     "ref": weakref.ref(loader)}

    @guarded
    def loader_iter(self, loader: Any) -> None:
        # only a loader whose batches reach a training forward is the training loader (see _adopt_loader):
        # the Trainer iterates its evaluation loader, in order, with gradients enabled
        info = self._loaders.get(id(loader))
        if info is not None and info["ref"]() is loader and self._grad:
            self._active_loader = info

    def _adopt_loader(self) -> None:
        """A training forward ran: the loader iterated last is the one that feeds training."""
        info = self._active_loader
        if info is not None:
            d = self._data()
            d.loader_where, d.sampler = info["where"], info["sampler"]
            d.shuffle = info["sampler"] not in ("SequentialSampler",)
            self._active_loader = None

    @guarded
    def tokenizer_called(self, texts: Any, kwargs: dict, encoding: Any) -> None:
        d = self._data()
        if d.tokenizer_where is None:
            d.tokenizer_where = where_here(keyword="max_length", skip=4, value=kwargs.get("max_length"))
        ids = encoding.get("input_ids") if hasattr(encoding, "get") else None
        if ids is None or not isinstance(texts, (list, tuple)) or not texts:
            return
        rows = ids.tolist() if hasattr(ids, "tolist") else ids
        if not rows or not isinstance(rows[0], (list, tuple)):
            return
        max_len = kwargs.get("max_length")
        if kwargs.get("truncation") and max_len:
            d.tokenizer_max_length = int(max_len)
            pad = d.pad_token_id if d.pad_token_id is not None else 0
            d.rows_at_max_length += sum(1 for r in rows if len([t for t in r if t != pad]) >= max_len)
        pair = kwargs.get("text_pair")
        keys = list(zip(texts, pair)) if isinstance(pair, (list, tuple)) and len(pair) == len(texts) else list(texts)
        d.tokenizer_rows += len(rows)
        d.distinct_texts += len(set(map(str, keys)))
        d.distinct_encodings += len({tuple(r) for r in rows})

    @guarded
    def scheduler_created(self, scheduler: Any) -> None:
        o = self._optim()
        o.scheduler = type(scheduler).__name__
        o.scheduler_where = where_here(skip=4)

    @guarded
    def scheduler_stepped(self, scheduler: Any) -> None:
        o = self._optim()
        o.scheduler_steps += 1
        if o.scheduler_step_where is None:
            o.scheduler_step_where = where_here(skip=4)

    @guarded
    def clip_called(self) -> None:
        self._optim().clip_calls += 1

    # ------------------------------------------------------------------ rules during the run
    def on_step(self, callback: Callable[[int], None]) -> None:
        self._step_callbacks.append(callback)

    def evaluate(self):
        """Run the rules on what is known now; remember when each first fired."""
        from defib.diagnosis import diagnose

        d = diagnose(self.finalize_signals(), first_fired=self._first_fired)
        if d.verdict == "flatlined" and not self._flatline_announced and self.announce is not None:
            self._flatline_announced = True
            top = d.findings[0] if d.findings else None
            f = d.flatline or {}
            msg = (f"defib: predictions flatlined at step {f.get('step')} "
                   f"(prediction spread {num(f.get('pred_std'))} vs targets {num(f.get('target_std'))})")
            if top is not None and top.cause:
                msg += f"; likely cause: {top.cause} [{top.code}]"
            self.announce(msg)
        elif d.verdict != "flatlined" and "S001" in self._first_fired:
            # the predictions spread out again: a later collapse is a new one, with its own step
            del self._first_fired["S001"]
            if self._flatline_announced and self.announce is not None:
                self._flatline_announced = False
                self.announce(f"defib: predictions recovered by step {self.s.step} (no longer flat)")
        return d

    def finalize_signals(self) -> Signals:
        s = self.s
        self._update_slow_stats()
        if s.model is not None and s.step:
            s.model.train_mode_share = self._train_mode_steps / s.step
        if s.optim is not None and self._main_opt is not None:
            opt = self._main_opt()
            names = self._name_map()
            if opt is not None and s.step >= 1:
                o = s.optim
                trainable = [p for p in self._opt_params(opt) if p.requires_grad]
                o.never_grad = [names.get(id(p), (f"param{i}",))[0] for i, p in enumerate(trainable)
                                if id(p) not in self._ever_grad][:200]
                o.zero_grad_params = [names.get(id(p), (f"param{i}",))[0] for i, p in enumerate(trainable)
                                      if id(p) in self._ever_grad and id(p) not in self._ever_nonzero][:200]
            s.optim.steps_without_zero_grad = self._not_cleared
        if s.model is not None and self._init_where:
            names = self._name_map()
            s.model.init_where = {names[i][0]: w for i, w in self._init_where.items() if i in names}
        return s

    def diagnose(self):
        from defib.diagnosis import diagnose

        self.s.config["seconds"] = round(time.time() - self.started, 2)
        return diagnose(self.finalize_signals(), first_fired=self._first_fired)


def _add_quantiles(into: dict[str, Series], step: int, x: np.ndarray) -> None:
    """Percentiles of a window at one step: the prediction and target distributions over time, for the report."""
    if x.size:
        for q, v in zip(QUANTILES, np.percentile(x, QUANTILES)):
            into.setdefault(f"p{q}", Series()).add(step, float(v))


def _add_class_shares(into: dict[str, Series], step: int, counts: dict[int, int], total: int) -> None:
    """Share of each predicted class in the window at one step (the first MAX_PLOTTED_CLASSES, the rest as "other")."""
    other = 0
    for cls, n in counts.items():
        if cls < MAX_PLOTTED_CLASSES:
            into.setdefault(str(cls), Series()).add(step, n / total)
        else:
            other += n
    if other:
        into.setdefault("other", Series()).add(step, other / total)
    for name, series in into.items():  # a class no longer predicted drops to 0, not to its last share
        if series.last_step != step:
            series.add(step, 0.0)


def _entropy_share(pred: dict[int, int], labels: dict[int, int]) -> float:
    """Entropy of the predicted classes over the entropy of the labels (0: one class always)."""

    def entropy(counts: dict[int, int]) -> float:
        c = np.array([v for v in counts.values() if v > 0], dtype=np.float64)
        if c.sum() == 0:
            return 0.0
        q = c / c.sum()
        return float(-(q * np.log(q)).sum())

    h_labels = entropy(labels)
    return entropy(pred) / h_labels if h_labels > 0 else math.nan


def _built_by_trainer() -> bool:
    """True when the transformers Trainer (not the user) is constructing this optimizer."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.replace("\\", "/").endswith("transformers/trainer.py"):
            return True
        frame = frame.f_back
    return False


def stderr_announce(msg: str) -> None:
    """Print one announcement on stderr, from rank 0 only (every rank sees the same reduced figures)."""
    from defib.evidence.distributed import is_main_process

    if is_main_process():
        print(msg, file=sys.stderr, flush=True)
