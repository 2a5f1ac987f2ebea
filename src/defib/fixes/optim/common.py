"""What several optimizer fixes share: setting the learning rate, adding parameters to the optimizer."""

from __future__ import annotations

import math

import torch

from defib.fixes.base import Fix

HEALTHY_UPDATE_RATIO = 5e-4  # per-step |update| / |weight| of a fine-tuned BERT that learns: ~1e-3 at lr 5e-5, ~4e-4 at 2e-5
FALLBACK_LR = 2e-5           # the low end of BERT's fine-tuning range (Devlin et al.), when no update was measured


def one_digit(x: float) -> float:
    """Round to one significant digit, as a person writes a learning rate."""
    exp = math.floor(math.log10(x))
    return round(x / 10 ** exp) * 10 ** exp


class SetLr(Fix):
    """Shared: rescale every parameter group's lr when the optimizer is built."""

    ratio_key = ""

    @classmethod
    def plan(cls, evidence, finding):
        lr, ratio = evidence.get("lr"), evidence.get("nominal_update_ratio") or evidence.get(cls.ratio_key)
        if isinstance(lr, (int, float)) and lr > 0 and isinstance(ratio, (int, float)) and ratio > 0:
            return {"lr": one_digit(lr * HEALTHY_UPDATE_RATIO / ratio), "from_lr": lr}
        return {"lr": FALLBACK_LR, "from_lr": lr}

    @classmethod
    def describe(cls, params):
        if params.get("from_lr"):
            # from_lr is the lr measured at the finding's step (late in a decay it is far below the one set):
            # the fix scales whatever the script sets by the same factor, so say it as a factor
            return (f"every group's lr x {params['lr'] / params['from_lr']:.3g} (the lr measured, "
                    f"{params['from_lr']:.2g}, becomes {params['lr']:.0e})")
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


class AddParams(Fix):
    """Shared: before the first step, give the optimizer the model's parameters it lacks.

    When the script built exactly one parameter group that holds nothing (a
    head group whose name filter matched no parameter: ``n.startswith("classifier.")``
    for a head called ``head``), the missing parameters go there: that group
    carries the lr and weight decay the user chose for them, and every
    scheduler already has its entry. Otherwise a new group copies the first
    group's settings (its scheduled lr, betas, weight decay, a scheduler's
    ``initial_lr``/``max_lr``), and every scheduler already built on the
    optimizer gets a matching entry: PyTorch's schedulers keep one base lr (and
    one lambda) per group and refuse a group they do not know
    (``zip(..., strict=True)``).
    """

    def unfreezes(self, name: str) -> bool:
        """True for a frozen parameter (by its name in the model) that this fix makes trainable first."""
        return False

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
            for name, p in root.named_parameters():
                if not p.requires_grad and self.unfreezes(name):
                    p.requires_grad_(True)
                if p.requires_grad and id(p) not in have:
                    have.add(id(p))
                    missing.append(p)
        if not missing:
            return
        empty = [g for g in optimizer.param_groups if not g["params"]]
        if len(empty) == 1:
            empty[0]["params"].extend(missing)
            return
        ref = optimizer.param_groups[0]
        optimizer.add_param_group({**{k: v for k, v in ref.items() if k != "params"}, "params": missing})
        self._extend_schedulers(optimizer)
