"""O007: gradients not cleared, or cleared before the step uses them."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class ZeroGradPlacement(Rule):
    """``zero_grad`` is missing, or sits between ``backward()`` and ``step()``.

    What it detects:
        At the first ``backward()`` after each optimizer step, whether the
        gradients are still non-zero (never cleared); and at each step,
        whether the gradients were cleared after the last ``backward()`` (the
        optimizer steps on zeros).

    Why it flattens predictions:
        Never clearing makes the gradient a running sum of every batch so far:
        its direction freezes on the average batch and its size grows each
        step, pushing the model towards the global mean target. Clearing
        between ``backward()`` and ``step()`` means the optimizer never sees a
        gradient: nothing learns and the fresh head's flat output stays.

    Example:
        ``loss.backward(); optimizer.zero_grad(); optimizer.step()``

    Fix:
        ``optimizer.zero_grad(); loss.backward(); optimizer.step()`` in that
        order, once per optimizer step.
    """

    code = "O007"
    cause = "optim.zero_grad"
    title = "Gradients not cleared at the right place"
    severity = Severity.ERROR
    needs = ("optim",)

    min_step = 3
    missing_share = 0.9   # share of steps whose gradients were never cleared: zero_grad missing
    zeroed_share = 0.5    # share of steps that found their gradients cleared after backward

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        if s.step < self.min_step:
            return None
        later_steps = max(1, s.step - 1)  # the check starts at the second backward
        not_cleared = o.steps_without_zero_grad / later_steps
        if not_cleared >= self.missing_share:
            cleared = (f"zero_grad() ran {o.zero_grad_calls} time(s), not once a step" if o.zero_grad_calls
                       else "they are never cleared")
            return self.finding(
                f"At {o.steps_without_zero_grad} of {later_steps} steps the gradients from the previous step were "
                f"still there when backward() ran: {cleared}, so they add up over the whole run.",
                # a zero_grad() that runs (once before the loop, once an epoch) is the one to move into the step;
                # with none at all, it goes in at backward()
                confidence=0.9, where=o.zero_grad_where or o.backward_where,
                evidence={"steps_not_cleared": o.steps_without_zero_grad, "steps": s.step,
                          "zero_grad_calls": o.zero_grad_calls},
                fix="optimizer.zero_grad()  # before loss.backward(), every step")
        zeroed = o.steps_zeroed_before_step / s.step
        if zeroed >= self.zeroed_share:
            return self.finding(
                f"At {o.steps_zeroed_before_step} of {s.step} steps the gradients were cleared after backward() "
                "and before step(): the optimizer steps on zeros.",
                confidence=0.95, where=o.late_zero_grad_where or o.zero_grad_where or o.step_where,
                evidence={"steps_zeroed_before_step": o.steps_zeroed_before_step, "steps": s.step},
                fix="optimizer.zero_grad(); loss.backward(); optimizer.step()")
        return None
