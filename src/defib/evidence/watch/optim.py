"""Evidence about the optimization: optimizers, backward, zero_grad, gradients, update sizes, the scheduler.

The first optimizer that steps is the watched one (others: GANs, probes).
Gradients are read in the optimizer's pre-step hook, where they are final;
the update ratio compares a copy of one tensor per module group taken there
with the tensor after the step. Both run on sampled steps only.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import weakref
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from defib.evidence import adapters as A
from defib.evidence import params as P
from defib.evidence.callsite import is_user_file, make_where, where_here, where_made
from defib.evidence.lightning_cadence import cadence_line
from defib.evidence.provenance import step_guard_line
from defib.evidence.schedules import schedule_plan
from defib.evidence.watch.graph import ReducedFirst, loss_where, read_loss
from defib.evidence.watch.guard import Part, guarded
from defib.signals.common import Series
from defib.signals.run import OptimSignals

MAX_GRAPH_MISSES = 16  # a loss graph that held nothing recognisable this often is not walked again


class OptimEvidence(Part):
    """Optimizers seen (weakly held), per-step gradient bookkeeping; fills ``s.optim``."""

    def __init__(self, watcher: Any):
        super().__init__(watcher)
        self._optimizers: dict[int, dict[str, Any]] = {}
        self._main_opt: weakref.ref | None = None
        self._opt_ids: set[int] = set()
        self._ever_grad: set[int] = set()
        self._backward_since_step = 0
        self._zeroed_after_backward = False
        self._probe: nn.Parameter | None = None
        self._not_cleared = 0
        self._graph_misses = 0  # backward() calls whose graph held no recognised loss
        self._scaled: tuple[weakref.ref, torch.Tensor] | None = None  # (GradScaler's output, the loss it scaled)
        self.skipped = False  # the step being observed is one GradScaler skipped (see Watcher.scaler_step)
        # group -> what gives (||W before||, ||W after - W before||) of its measured tensor once the step is taken
        self._snap: dict[str, Callable[[], torch.Tensor]] = {}
        self.training_args_where = None  # set by the TrainingArguments patch
        self.training_args_plan: tuple | None = None  # (max_steps, warmup_steps, where of the warmup), likewise

    def signals(self) -> OptimSignals:
        if self.w.s.optim is None:
            self.w.s.optim = OptimSignals()
        return self.w.s.optim

    @guarded
    def module_cast(self, module: nn.Module) -> None:
        """A module cast whose weights end up in half precision: the line a user changes to keep them float32."""
        p = next(module.parameters(), None)
        if p is not None and p.dtype in (torch.float16, torch.bfloat16):
            where = where_here(skip=4)
            if where is not None:
                self.signals().half_cast_where = where

    # ------------------------------------------------------------------ backward / zero_grad
    @guarded
    def backward_pre(self, tensor: torch.Tensor) -> None:
        tensor = self._unscaled(tensor)
        o = self.signals()
        o.backward_calls += 1
        if o.backward_where is None:
            o.backward_where = where_here(skip=4)
            o.step_guard_where = _step_guard_where(o.backward_where)
        if tensor.grad_fn is None and o.leaf_loss_where is None:  # a loss rebuilt outside the graph
            o.leaf_loss_where = where_made("backward", skip=4) or where_here(skip=4)
        if tensor.numel() == 1:
            self.w.later(self.w.loss.backward_value, tensor.detach(), self.w.s.step + 1)
        if tensor.grad_fn is not None and self._graph_misses < MAX_GRAPH_MISSES and \
                (self.w.s.loss is None or self.w.s.loss.source == "graph"):
            self._read_graph(tensor)
        if self._backward_since_step == 0 and self._probe is not None and self.w.s.step > 0:
            g = self._probe.grad
            if g is not None:
                self.w.later(self._count_not_cleared, (g != 0).any())
        self._zeroed_after_backward = False

    def _unscaled(self, tensor: torch.Tensor) -> torch.Tensor:
        """The loss before ``scaler.scale(loss)`` multiplied it, if ``tensor`` is that product: the scaler's scale
        is neither the user's loss scale (L005) nor a NaN in the loss when it overflows (the scaler skips that step)."""
        if self._scaled is not None and self._scaled[0]() is tensor:
            tensor, self._scaled = self._scaled[1], None
        return tensor

    def _count_not_cleared(self, nonzero: torch.Tensor) -> None:
        """Read at a flush: the head's gradient was not zero when a step's first backward began."""
        if bool(nonzero):
            self._not_cleared += 1

    def _read_graph(self, loss: torch.Tensor) -> None:
        """No hooked loss call made this loss: read its predictions and targets from its graph."""
        found, names = read_loss(loss)
        if isinstance(found, ReducedFirst):
            self.w.loss.reduced_first(found, functools.partial(loss_where, True))
            self.signals().unread_loss = []
        elif found is not None:
            self.w.loss.graph_loss(found, functools.partial(loss_where, found.family == "regression"),
                                   functools.partial(loss_where, False))
            self.signals().unread_loss = []
        else:
            self._graph_misses += 1
            if self.w.s.loss is None:
                self.signals().unread_loss = names[:12]

    @guarded
    def backward_post(self, tensor: torch.Tensor) -> None:
        self._backward_since_step += 1

    @guarded
    def zero_grad_call(self, owner: Any) -> None:
        o = self.signals()
        o.zero_grad_calls += 1
        if o.zero_grad_where is None:
            o.zero_grad_where = where_here(skip=4)
        if self._backward_since_step > 0:
            self._zeroed_after_backward = True
            if o.late_zero_grad_where is None:
                o.late_zero_grad_where = where_here(skip=4)

    # ------------------------------------------------------------------ optimizer and scheduler
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
        self.signals().optimizers_built += 1
        self._optimizers[id(optimizer)] = {
            "ref": weakref.ref(optimizer), "where": where, "lr_where": lr_where,
            "lr": [float(g.get("lr", math.nan)) if not torch.is_tensor(g.get("lr")) else float(g["lr"])
                   for g in optimizer.param_groups],
            "name": owner or type(optimizer).__name__,
        }

    @guarded
    def scheduler_created(self, scheduler: Any) -> None:
        o = self.signals()
        o.scheduler = type(scheduler).__name__
        o.scheduler_where = where_here(skip=4)
        made = o.scheduler_where
        cadence = made and cadence_line(os.path.abspath(made.file), made.line)
        o.scheduler_cadence_where = make_where(os.path.abspath(made.file), cadence) if cadence else None
        self._note_plan(scheduler)

    def _note_plan(self, scheduler: Any) -> None:
        """The run's planned length and warmup: as the schedule states them, else as TrainingArguments did."""
        o = self.signals()
        total, warmup, source = schedule_plan(scheduler) or (None, None, None)
        args = self.training_args_plan if _built_by_trainer() else None
        if args is not None:
            total = total if total is not None else args[0]
            warmup = warmup if warmup is not None else args[1]
            source = source or "TrainingArguments"
        if total is None and warmup is None:
            return
        o.planned_steps, o.warmup_steps, o.plan_source = total, warmup, source
        # the Trainer computes the schedule from TrainingArguments: the argument is the line to edit
        o.warmup_where = args[2] if args is not None and args[2] is not None else \
            where_here(keyword="num_warmup_steps", skip=5)

    @guarded
    def scheduler_stepped(self, scheduler: Any) -> None:
        o = self.signals()
        o.scheduler_steps += 1
        if o.scheduler_step_where is None:
            o.scheduler_step_where = where_here(skip=4)

    def may_be_main(self, optimizer: torch.optim.Optimizer) -> bool:
        """``optimizer`` is the watched one, or no optimizer has stepped yet."""
        return self._main_opt is None or self._main_opt() is optimizer

    def is_main(self, optimizer: torch.optim.Optimizer) -> bool:
        """``optimizer`` is the watched one (False before any step)."""
        return self._main_opt is not None and self._main_opt() is optimizer

    def main(self) -> torch.optim.Optimizer | None:
        """The watched optimizer (None before any step, or once it is gone)."""
        return None if self._main_opt is None else self._main_opt()

    def adopt(self, optimizer: torch.optim.Optimizer) -> bool:
        """The first optimizer that steps is the one watched (others: GANs, probes); True if this is it."""
        if self._main_opt is None:
            self._main_opt = weakref.ref(optimizer)
            o = self.signals()
            info = self._optimizers.get(id(optimizer))
            if info is None:
                self.optimizer_created.__wrapped__(self, optimizer, where=None, lr_where=None)
                info = self._optimizers[id(optimizer)]
            o.optimizer, o.where, o.lr_where, o.lr_initial = info["name"], info["where"], info["lr_where"], info["lr"]
            self._opt_ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
        return self._main_opt() is optimizer

    # ------------------------------------------------------------------ torch.amp.GradScaler
    def loss_scaled(self, loss: Any, scaled: Any) -> None:
        """``scaler.scale(loss)`` returned ``scaled``: the next backward() on it reads ``loss`` instead."""
        if isinstance(loss, torch.Tensor) and isinstance(scaled, torch.Tensor):
            self._scaled = (weakref.ref(scaled), loss)

    @guarded
    def scaler_stepped(self, scaler: Any, optimizer: torch.optim.Optimizer, taken: bool) -> None:
        """``scaler.step(optimizer)`` returned; ``taken``: the optimizer's own step ran (False: inf/NaN gradients)."""
        if not self.may_be_main(optimizer):
            return
        o = self.signals()
        o.scaler_steps += 1
        if o.scaler_where is None:
            o.scaler_where = where_here(skip=4)
        o.scaler_skipped += 0 if taken else 1
        o.scaler_skip_streak = 0 if taken else o.scaler_skip_streak + 1
        scale = getattr(scaler, "_scale", None)  # the scale this step used; get_scale() would read it now
        if isinstance(scale, torch.Tensor):
            self.w.later(self._scale_read, scale.detach().clone())

    def _scale_read(self, scale: torch.Tensor) -> None:
        o = self.signals()
        value = float(scale)
        if o.scaler_scale_first is None:
            o.scaler_scale_first = value
        o.scaler_scale_last = value

    # ------------------------------------------------------------------ around the step
    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """The watched optimizer is about to take step ``step``: gradients, learning rate, a copy for the update."""
        o = self.signals()
        if o.step_where is None:
            o.step_where = where_here(skip=4)
        o.lr.add(step, max(float(g["lr"]) for g in optimizer.param_groups))
        # gradient accounting
        if self._backward_since_step > 0:
            o.micro_batches.append(self._backward_since_step)
            del o.micro_batches[:-64]
        sampled = self.w.sampled(step)
        zeroed = self._backward_since_step > 0 and self._zeroed_after_backward
        if not (sampled or zeroed or step == 1):
            return  # nothing below runs on most steps: no walk over the parameters
        params = _opt_params(optimizer)
        names = self.w.model.names()
        if step == 1:
            self._first_step(params, names)
        # zero_grad() between backward() and step(); grads that never arrive at all are a cut graph (O006)
        if zeroed:
            grads = [p.grad for p in params if p.grad is not None]
            if not grads or not any(bool(g.any()) for g in grads[:4]):
                o.steps_zeroed_before_step += 1
        if sampled:
            self._sample_grads(step, params, names)
        self._snapshot(step, params, names)

    def _first_step(self, params: list[nn.Parameter], names: dict) -> None:
        o = self.signals()
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

    def _freeze_where(self) -> Any:
        """Search the user's files defib has seen (the script first) for the line that freezes parameters."""
        from defib.evidence.provenance import freeze_line

        main = getattr(sys.modules.get("__main__"), "__file__", None)
        seen = [main] + [getattr(getattr(r, "_defib_where", None), "file", None) for r in self.w.model.roots()]
        seen += [info["where"].file for info in self._optimizers.values() if info.get("where") is not None]
        files = list(dict.fromkeys(os.path.abspath(f) for f in seen if f and is_user_file(os.path.abspath(f))))
        opt_lines = {os.path.abspath(i["where"].file): i["where"].line
                     for i in self._optimizers.values() if i.get("where") is not None}
        found = freeze_line(files, opt_lines)
        return make_where(*found) if found else None

    def _sample_grads(self, step: int, params: list[nn.Parameter], names: dict) -> None:
        o = self.signals()
        by_group: dict[str, list[torch.Tensor]] = {}
        for p in params:
            if p.grad is not None:
                self._ever_grad.add(id(p))
                name = names.get(id(p), ("?",))[0]
                by_group.setdefault(P.group_of(name), []).append(p.grad.detach())
        if by_group and not self.skipped:  # a step GradScaler skipped has inf/NaN gradients: the scaler's evidence
            self._grad_norms(step, by_group)
        # parameters that get gradients but are in no optimizer
        for pid, (name, p) in names.items():
            if pid not in self._opt_ids and p.grad is not None and name not in o.not_in_optimizer:
                o.not_in_optimizer.append(name)
        o.groups_with_grad = sorted(by_group, key=P.group_order)
        self._idle_adapters()

    def _idle_adapters(self) -> None:
        """The adapted modules whose trainable factors in the optimizer have had no gradient yet."""
        idle = []
        for f in {id(f): f for f in self.w.model.lora().values()}.values():
            trainable = [id(t) for t in (f.a, f.b) if t.requires_grad and id(t) in self._opt_ids]
            if trainable and not any(i in self._ever_grad for i in trainable):
                idle.append(f.name)
        self.signals().adapters_idle = idle[:200]

    def _grad_norms(self, step: int, by_group: dict[str, list[torch.Tensor]]) -> None:
        o = self.signals()
        # one squared norm per group, all read in one host transfer (each float() would wait for the device)
        squares = [torch.stack(torch._foreach_norm([g.float() for g in gs])).pow(2).sum().cpu()
                   for gs in by_group.values()]
        total_sq = 0.0
        for group, sq in zip(by_group, torch.stack(squares).tolist()):
            total_sq += sq
            o.grad_norm.setdefault(group, Series()).add(step, math.sqrt(sq))
        o.grad_total.add(step, math.sqrt(total_sq))
        if not math.isfinite(total_sq):
            o.nonfinite.setdefault("grad", step)

    def _snapshot(self, step: int, params: list[nn.Parameter], names: dict) -> None:
        """Before a sampled step, keep what measures one tensor's update per group after it.

        The update ratio ||W_after - W_before|| / ||W_before|| is estimated on at
        most SNAPSHOT_ELEMENTS evenly spaced elements of the tensor: a copy of
        whole tensors would cost memory in proportion to the model (7% of
        BERT-base's weights), while an update spread over a tensor gives the same
        ratio on a large even subset (the elements are the same before and after).
        A LoRA factor stands for its adapted layer, whose update is the change the
        adapter makes to it relative to the frozen weight (evidence/adapters.py):
        the factors' own ratios mean nothing (B starts at exactly zero).
        """
        self._snap.clear()
        if not self.w.sampled(step) or self.skipped:  # a skipped step changes no weight: no update to measure
            return
        lora = self.w.model.lora()
        chosen: dict[str, nn.Parameter | A.LoraFactors] = {}
        sizes: dict[str, int] = {}
        for p in params:
            factors = lora.get(id(p))
            if p.grad is None or (factors is None and (p.ndim < 2 or p.numel() > 2_000_000)):
                continue
            group = P.group_of(names.get(id(p), ("?",))[0])
            size = factors.base.numel() if factors is not None else p.numel()
            if size > sizes.get(group, 0):
                chosen[group], sizes[group] = factors if factors is not None else p, size
        o = self.signals()
        for group, x in chosen.items():
            if isinstance(x, A.LoraFactors):
                self._snap[group] = functools.partial(A.update_norms, x, A.copy_factors(x))
                if group not in o.adapter_groups:
                    o.adapter_groups.append(group)
            else:
                idx = _subset(x)
                self._snap[group] = functools.partial(_update_norms, x, idx, x.detach().reshape(-1)[idx].clone())

    def after_step(self, step: int) -> None:
        """The watched optimizer took step ``step``: the update ratios, and the per-step counters start over."""
        o = self.signals()
        o.steps = step
        if self._snap:
            # (||before||, ||after - before||) per group, read in one host transfer
            norms = torch.stack([measure() for measure in self._snap.values()]).cpu().tolist()
            for group, (denom, delta) in zip(self._snap, norms):
                if not math.isfinite(delta):
                    o.nonfinite.setdefault("weight", step)
                if denom > 0:
                    o.update_ratio.setdefault(group, Series()).add(step, delta / denom)
            self._snap.clear()
        self._backward_since_step = 0
        self._zeroed_after_backward = False

    def finalize(self) -> None:
        """Parameters that never got a gradient; steps whose gradients were never cleared."""
        s = self.w.s
        if s.optim is None or self._main_opt is None:
            return
        opt = self._main_opt()
        names = self.w.model.names()
        if opt is not None and s.step >= 1:
            o = s.optim
            trainable = [p for p in _opt_params(opt) if p.requires_grad]
            o.never_grad = [names.get(id(p), (f"param{i}",))[0] for i, p in enumerate(trainable)
                            if id(p) not in self._ever_grad][:200]
        s.optim.steps_without_zero_grad = self._not_cleared


SNAPSHOT_ELEMENTS = 65_536  # per tensor: a relative error of the update norm well under 1%, 256 KB in float32


def _subset(p: torch.Tensor) -> torch.Tensor | slice:
    """Evenly spaced flat indices of at most SNAPSHOT_ELEMENTS elements of ``p`` (all of a smaller tensor)."""
    n = p.numel()
    if n <= SNAPSHOT_ELEMENTS:
        return slice(None)
    return torch.linspace(0, n - 1, SNAPSHOT_ELEMENTS, device=p.device).long()


def _update_norms(p: torch.Tensor, idx: torch.Tensor | slice, before: torch.Tensor) -> torch.Tensor:
    """(||before||, ||after - before||) over the subset ``idx`` of ``p``, as a (2,) tensor on its device."""
    return torch.stack([before.float().norm(), (p.detach().reshape(-1)[idx].float() - before.float()).norm()])


def _opt_params(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for g in optimizer.param_groups for p in g["params"]]


def _built_by_trainer() -> bool:
    """True when the transformers Trainer (not the user) is constructing this optimizer."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.replace("\\", "/").endswith("transformers/trainer.py"):
            return True
        frame = frame.f_back
    return False


def _step_guard_where(backward: Any) -> Any:
    """Where the user's code decides to step the optimizer, found in the source of the backward() call's function."""
    if backward is None:
        return None
    filename = os.path.abspath(backward.file)
    line = step_guard_line(filename, backward.line)
    return make_where(filename, line) if line else None
