"""O008: gradient accumulation stepping or clearing at the wrong cadence."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.measures import ADAPTIVE, collapsed
from defib.signals.run import Signals



@register
class GradAccumulation(Rule):
    """Accumulated gradients are cleared, stepped or scaled on the wrong schedule.

    What it detects:
        How many ``backward()`` calls precede each optimizer step, how often
        gradients survive from one step into the next (a partial pattern:
        cleared every k steps instead of every step), and whether the loss is
        divided by the number of accumulated micro-batches.

    Why it flattens predictions:
        Clearing every k *optimizer steps* while stepping every micro-batch
        re-applies old gradients k times: the update is dominated by a stale
        sum that points to the global mean target. Summing k micro-batches
        without dividing multiplies a plain SGD step by k. Either way the
        run behaves like one with a far too large, input-blind step.

    Example:
        ``loss.backward(); optimizer.step()`` every batch, but
        ``if i % 4 == 0: optimizer.zero_grad()``.

    Fix:
        ``(loss / k).backward()`` every micro-batch; every k micro-batches:
        ``optimizer.step(); optimizer.zero_grad()``.
    """

    code = "O008"
    cause = "optim.grad_accumulation"
    title = "Gradient accumulation mis-scaled or mis-stepped"
    severity = Severity.ERROR
    needs = ("optim",)

    min_step = 6
    partial_low, partial_high = 0.2, 0.9  # share of steps with stale gradients that marks a wrong cadence
    max_scale = 1.5                       # accumulated loss not divided: scale vs mean above this x 1/k

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        if s.step < self.min_step:
            return None
        later = max(1, s.step - 1)
        stale = o.steps_without_zero_grad / later
        if self.partial_low <= stale < self.partial_high:
            return self.finding(
                f"Gradients from the previous step were still present at {o.steps_without_zero_grad} of {later} "
                f"steps: zero_grad() runs every few optimizer steps, so old gradients are applied again "
                f"({o.zero_grad_calls} zero_grad calls for {s.step} steps).",
                confidence=0.85, where=o.zero_grad_where or o.step_where,
                severity=Severity.ERROR if collapsed(s) else Severity.WARNING,
                evidence={"stale_share": round(stale, 3), "zero_grad_calls": o.zero_grad_calls, "steps": s.step},
                fix="if (i + 1) % k == 0: optimizer.step(); optimizer.zero_grad()")
        k = sorted(o.micro_batches)[len(o.micro_batches) // 2] if o.micro_batches else 1
        factor = s.loss.scale_factor if s.loss is not None and s.loss.scale_factor else None
        if k > 1 and factor is not None and factor * 1.0 > self.max_scale / k and not o.optimizer.startswith(ADAPTIVE):
            return self.finding(
                f"{k} backward() calls accumulate into each step but the loss is not divided by {k}: "
                f"{o.optimizer}'s step is {k}x larger than intended.",
                confidence=0.75, where=o.backward_where,
                severity=Severity.ERROR if collapsed(s) else Severity.WARNING,
                evidence={"micro_batches": k, "scale_vs_mean": factor, "optimizer": o.optimizer},
                fix=f"(loss / {k}).backward()")
        return None
