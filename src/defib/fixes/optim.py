"""Fixes applied to the optimizer: learning rate, schedule, zero_grad, missing or frozen parameters, no_grad."""

from __future__ import annotations

import math
import torch

from defib.fixes.base import Fix, fix_for
from defib.fixes.loss import scale_grads

HEALTHY_UPDATE_RATIO = 5e-4  # per-step |update| / |weight| of a fine-tuned BERT that learns: ~1e-3 at lr 5e-5, ~4e-4 at 2e-5
FALLBACK_LR = 2e-5           # the low end of BERT's fine-tuning range (Devlin et al.), when no update was measured


def _one_digit(x: float) -> float:
    """Round to one significant digit, as a person writes a learning rate."""
    exp = math.floor(math.log10(x))
    return round(x / 10 ** exp) * 10 ** exp


class _SetLr(Fix):
    """Shared: rescale every parameter group's lr when the optimizer is built."""

    ratio_key = ""

    @classmethod
    def plan(cls, evidence, finding):
        lr, ratio = evidence.get("lr"), evidence.get("nominal_update_ratio") or evidence.get(cls.ratio_key)
        if isinstance(lr, (int, float)) and lr > 0 and isinstance(ratio, (int, float)) and ratio > 0:
            return {"lr": _one_digit(lr * HEALTHY_UPDATE_RATIO / ratio), "from_lr": lr}
        return {"lr": FALLBACK_LR, "from_lr": lr}

    @classmethod
    def describe(cls, params):
        if params.get("from_lr"):
            return (f"lr={params['lr']:.0e} where it was {params['from_lr']:.2g}: every group's lr "
                    f"x {params['lr'] / params['from_lr']:.3g}")
        return f"lr={params['lr']:.0e}"

    def optimizer_created(self, optimizer):
        """Scale every group's lr by new / measured, keeping the ratios between groups and the schedule's shape.

        The measured lr is the one in effect when the update ratio was taken
        (during a warmup it is a fraction of the lr the optimizer was built
        with), so the built lr is scaled by the same factor rather than set to
        the new value: the schedule then reaches the healthy update size where
        the first run measured a bad one.
        """
        groups = optimizer.param_groups
        top = max(float(g["lr"]) for g in groups) if groups else 0.0
        measured = self.params.get("from_lr")
        factor = self.params["lr"] / measured if measured else (self.params["lr"] / top if top > 0 else 1.0)
        for g in groups:  # keep the ratios between groups (layer-wise decay, a faster head)
            new = float(g["lr"]) * factor if top > 0 else self.params["lr"]
            g["lr"] = torch.tensor(new) if torch.is_tensor(g["lr"]) else new
        if "lr" in optimizer.defaults:
            optimizer.defaults["lr"] = max(float(g["lr"]) for g in groups) if groups else self.params["lr"]


@fix_for
class LowerLr(_SetLr):
    cause = "optim.lr_too_high"
    ratio_key = "update_ratio_peak"


@fix_for
class RaiseLr(_SetLr):
    cause = "optim.lr_too_low"
    ratio_key = "update_ratio_median"


@fix_for
class ConstantLr(Fix):
    """Hold the configured learning rate: the scheduler's steps are skipped."""

    cause = "optim.lr_schedule"

    def scheduler_created(self, scheduler):
        for g in scheduler.optimizer.param_groups:
            if "initial_lr" in g:
                g["lr"] = g["initial_lr"]

    def skip_scheduler_step(self) -> bool:
        return True


@fix_for
class ZeroGradEachStep(Fix):
    """optimizer.zero_grad() right after optimizer.step(), and nowhere else."""

    cause = "optim.zero_grad"

    def skip_zero_grad(self) -> bool:
        return True

    def after_step(self, optimizer):
        for g in optimizer.param_groups:
            for p in g["params"]:
                p.grad = None


@fix_for
class AccumulateRight(ZeroGradEachStep):
    """Clear gradients after each step and divide accumulated gradients by the micro-batch count."""

    cause = "optim.grad_accumulation"

    @classmethod
    def plan(cls, evidence, finding):
        k = evidence.get("micro_batches")
        return {"grad_scale": 1.0 / k} if k else {}

    @classmethod
    def describe(cls, params):
        return f"(loss / {round(1 / params['grad_scale'])}).backward()" if params.get("grad_scale") else \
            "optimizer.zero_grad() after every optimizer.step()"

    def skip_zero_grad(self) -> bool:
        return not self.params.get("grad_scale")

    def before_step(self, optimizer, watcher):
        scale_grads(optimizer, self.params.get("grad_scale"))

    def after_step(self, optimizer):
        if not self.params.get("grad_scale"):
            super().after_step(optimizer)


class _AddParams(Fix):
    """Shared: before the first step, give the optimizer the model's parameters it lacks.

    The new group copies the first group's settings (its scheduled lr, betas,
    weight decay, a scheduler's ``initial_lr``/``max_lr``), and every scheduler
    already built on the optimizer gets a matching entry: PyTorch's schedulers
    keep one base lr (and one lambda) per group and refuse a group they do not
    know (``zip(..., strict=True)``).
    """

    unfreeze = False

    def __init__(self, params):
        super().__init__(params)
        self._schedulers: list = []

    def scheduler_created(self, scheduler):
        self._schedulers.append(scheduler)

    def _extend_schedulers(self, optimizer) -> None:
        for sched in self._schedulers:
            # the same groups, not the same object: accelerate's AcceleratedOptimizer (what the Trainer's
            # scheduler holds) wraps the torch optimizer the step hooks see, and shares its param_groups
            if getattr(getattr(sched, "optimizer", None), "param_groups", None) is not optimizer.param_groups:
                continue
            n = len(optimizer.param_groups)
            for name in ("base_lrs", "lr_lambdas", "_last_lr", "min_lrs"):
                values = getattr(sched, name, None)
                if isinstance(values, list) and values and len(values) == n - 1:
                    values.append(values[0])

    def before_step(self, optimizer, watcher):
        if not self.first_time():
            return
        have = {id(p) for g in optimizer.param_groups for p in g["params"]}
        missing = []
        for root in watcher.roots():
            for p in root.parameters():
                if self.unfreeze and not p.requires_grad:
                    p.requires_grad_(True)
                if p.requires_grad and id(p) not in have:
                    have.add(id(p))
                    missing.append(p)
        if missing:
            ref = optimizer.param_groups[0]
            optimizer.add_param_group({**{k: v for k, v in ref.items() if k != "params"}, "params": missing})
            self._extend_schedulers(optimizer)


@fix_for
class Unfreeze(_AddParams):
    """Unfreeze every parameter and give the optimizer all of them."""

    cause = "optim.frozen"
    unfreeze = True


@fix_for
class AddMissingParams(_AddParams):
    """optimizer = AdamW(model.parameters(), ...): every trainable parameter in the optimizer."""

    cause = "optim.missing_params"


@fix_for
class GradThrough(Fix):
    """Run the modules that got no gradient with autograd on: no torch.no_grad() around them while training."""

    cause = "optim.detached"

    @classmethod
    def plan(cls, evidence, finding):
        """Only where part of the model did get gradients: the graph breaks inside it, around a module.

        A loss rebuilt outside autograd (NumPy, ``torch.tensor(number)``), or one
        cut from every parameter, has no graph that switching autograd back on
        could restore; neither has a ``.detach()``, but that the rerun shows.
        """
        if evidence.get("loss_without_graph") or not evidence.get("groups_with_grad"):
            return None
        return {}

    def __init__(self, params):
        super().__init__(params)
        self._outer: list[bool] = []    # grad mode at the entry of each top-level forward in progress
        self._switched: list[bool] = []  # per call of a no-gradient module: did the fix turn autograd on

    def before_step(self, optimizer, watcher):
        """At the first step, hook the largest modules none of whose parameters got a gradient.

        Each runs with autograd on when it is in train mode and the forward around
        it was entered with autograd on: a ``no_grad`` written inside the
        training forward goes, an evaluation under an outer ``no_grad`` (or in
        eval mode) stays as written. A module that is itself called from the
        training loop under ``no_grad`` has no forward around it; train mode
        decides there.
        """
        if not self.first_time():
            return
        never = {id(p) for g in optimizer.param_groups for p in g["params"] if p.requires_grad and p.grad is None}
        for root in watcher.roots():
            targets = list(_without_grad(root, never))
            if root not in targets:
                root.register_forward_pre_hook(self._enter)
                root.register_forward_hook(self._leave, always_call=True)
            for module in targets:
                module.register_forward_pre_hook(self._grad_on)
                module.register_forward_hook(self._grad_back, always_call=True)

    def _enter(self, module, args):
        self._outer.append(torch.is_grad_enabled())

    def _leave(self, module, args, output):
        if self._outer:
            self._outer.pop()

    def _grad_on(self, module, args):
        outer = self._outer[-1] if self._outer else True
        switch = (module.training and outer and not torch.is_grad_enabled()
                  and not torch.is_inference_mode_enabled())
        if switch:
            torch.set_grad_enabled(True)
        self._switched.append(switch)

    def _grad_back(self, module, args, output):
        if self._switched and self._switched.pop():
            torch.set_grad_enabled(False)


def _without_grad(module, never: set[int]):
    """The largest submodules (``module`` itself included) whose parameters all got no gradient."""
    params = list(module.parameters())
    if params and all(id(p) in never for p in params):
        yield module
        return
    for child in module.children():
        yield from _without_grad(child, never)
