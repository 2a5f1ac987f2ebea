"""O010: the warmup is longer than the run, so the learning rate never reaches its configured value."""

from __future__ import annotations

import math

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num
from defib.rules.measures import collapsed, not_learning
from defib.rules.optim.common import peak_lr
from defib.signals.run import Signals


@register
class WarmupLongerThanRun(Rule):
    """The schedule's warmup outlasts the planned run: the learning rate applied stays a fraction of the configured one.

    What it detects:
        The schedule's warmup (``num_warmup_steps``, the Trainer's
        ``warmup_steps``) at or beyond the planned run (``num_training_steps``,
        the Trainer's ``max_steps``), with its effect seen at every step: the
        highest learning rate actually applied so far at most ``max_reach`` of
        the configured one, and the run not learning (loss within 10% of the
        constant predictor's, or predictions flat) after the grace period.

    Why it flattens predictions:
        A linear warmup of W steps in a run of T < W steps ends at T / W of the
        configured learning rate and averages half of that: a warmup of 1,000
        in a 200-step run trains at 10% of the rate on average. The fresh head
        hardly moves from its near-constant start. The usual slip is a warmup
        counted in examples (``0.1 * len(dataset)``) or epochs' worth of batches
        where steps were meant, or a warmup from another run's configuration.

    Example:
        ``TrainingArguments(max_steps=300, warmup_steps=int(0.1 * len(train_ds)))``
        on 20,000 rows: a warmup of 2,000 steps, the learning rate at most
        7.5e-6 of the configured 5e-5.

    Fix:
        Count the warmup in optimizer steps, as a share of the run:
        ``warmup_ratio=0.06`` (transformers < 5), ``warmup_steps=0.06`` (a float
        under 1 is a share in transformers 5), or
        ``num_warmup_steps = int(0.06 * num_training_steps)``.
    """

    code = "O010"
    cause = "optim.lr_schedule"
    title = "Warmup longer than the run"
    severity = Severity.ERROR
    needs = ("optim", "preds")

    min_warmup = 1.0  # warmup / planned steps at or above this: the schedule never finishes warming up
    max_reach = 0.5   # the highest learning rate applied at most this share of the configured one: the run trains
    #                   at a quarter of it on average, and the effect confirms the plan (a schedule defib misread
    #                   would show the configured rate)

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        planned, warmup = o.planned_steps, o.warmup_steps
        if not planned or warmup is None or warmup < self.min_warmup * planned:
            return None
        peak = peak_lr(o)
        applied = [v for _, v in o.lr.pairs() if math.isfinite(v)]
        if not peak or peak <= 0 or not applied:
            return None
        reached = max(applied)
        if reached > self.max_reach * peak:
            return None
        if not (not_learning(s) or collapsed(s)):
            return None  # the run learns at this rate: a slow schedule, not a harmful one
        end = peak * min(1.0, planned / warmup)  # where a linear warmup stands at the planned end
        return self.finding(
            f"The warmup lasts {warmup} steps but the run plans {planned} ({o.plan_source or 'the schedule'}): the "
            f"learning rate applied reaches at most {num(reached)} by step {s.step} and would end at {num(end)}, "
            f"against the configured {num(peak)}.",
            confidence=0.9, where=o.warmup_where or o.scheduler_where or o.lr_where,
            evidence={"configured_lr": peak, "max_applied_lr": reached, "lr_at_planned_end": end,
                      "planned_steps": planned, "warmup_steps": warmup, "plan_source": o.plan_source,
                      "steps_observed": s.step},
            fix=f"warmup = int(0.06 * {planned}) steps (warmup_ratio=0.06), counted in optimizer steps, not examples")
