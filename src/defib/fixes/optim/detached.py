"""Fix for optim.detached: autograd switched back on around the modules that got no gradient."""

from __future__ import annotations

import torch

from defib.fixes.base import Fix, fix_for


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

    def before_step(self, optimizer, watcher):
        """At the first step, hook the largest modules none of whose parameters got a gradient.

        Each runs with autograd on when it is in train mode and the forward around
        it was entered with autograd on: a ``no_grad`` written inside the
        training forward goes, an evaluation under an outer ``no_grad`` (or in
        eval mode) stays as written. A module that is itself called from the
        training loop under ``no_grad`` has no forward around it; train mode
        decides there.

        Autograd stays on after the module returns, until the user's ``no_grad``
        block ends (its exit restores the mode it found, which was on): the
        block goes as a whole, as the finding tells the user to remove it. What
        the block does with the module's output (pooling, mixing layers) must
        keep the graph too, or the gradient still stops there.
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

    def _enter(self, module, args):
        self._outer.append(torch.is_grad_enabled())

    def _leave(self, module, args, output):
        if self._outer:
            self._outer.pop()

    def _grad_on(self, module, args):
        outer = self._outer[-1] if self._outer else True
        if module.training and outer and not torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            torch.set_grad_enabled(True)


def _without_grad(module, never: set[int]):
    """The largest submodules (``module`` itself included) whose parameters all got no gradient."""
    params = list(module.parameters())
    if params and all(id(p) in never for p in params):
        yield module
        return
    for child in module.children():
        yield from _without_grad(child, never)
