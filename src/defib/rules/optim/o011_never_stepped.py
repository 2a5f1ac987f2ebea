"""O011: backward() runs again and again, but the optimizer never steps."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class NeverStepped(Rule):
    """Gradients are computed for many batches while no optimizer ever takes a step.

    What it detects:
        At least ``min_backward`` ``backward()`` calls, an optimizer built,
        and not one optimizer step (a step a GradScaler skips still counts as
        one: see O009).

    Why it flattens predictions:
        Nothing is ever updated: the model predicts what it predicted at
        initialisation, and a fresh head predicts the same value (or class)
        for every input. The usual slip is the condition of a gradient
        accumulation loop: counting updates instead of micro-batches
        (``if (update + 1) % k == 0`` where ``update`` only grows inside that
        block), an off-by-one that never comes true, or the step left out.

    Example:
        ``if (update + 1) % 4 == 0: optimizer.step(); update += 1``: the
        condition is never true.

    Fix:
        Count micro-batches: ``if (i + 1) % k == 0: optimizer.step();
        optimizer.zero_grad()`` with ``i`` the batch index.
    """

    code = "O011"
    cause = "optim.grad_accumulation"
    title = "The optimizer never steps"
    severity = Severity.ERROR
    needs = ("optim",)

    # backward() calls with no step: more micro-batches than any accumulation accumulates (8-32 are usual)
    min_backward = 64

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        if s.step > 0 or o.backward_calls < self.min_backward or not o.optimizers_built:
            return None
        return self.finding(
            f"backward() ran {o.backward_calls} times but the optimizer never stepped: no weight has changed, so the "
            "model still predicts what it did at initialisation.",
            confidence=0.9, where=o.step_guard_where or o.backward_where,
            evidence={"backward_calls": o.backward_calls, "optimizer_steps": 0,
                      "optimizers_built": o.optimizers_built},
            fix="if (i + 1) % accumulation_steps == 0:  # i = the micro-batch index\n"
                "    optimizer.step(); optimizer.zero_grad()")
