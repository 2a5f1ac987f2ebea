"""O003: a schedule that holds the learning rate at (near) zero."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num
from defib.rules.optim.common import peak_lr
from defib.signals.run import Signals


LIGHTNING_FIX = 'return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}'


@register
class LearningRateSchedule(Rule):
    """The learning rate sits at a tiny fraction of its configured value for most of training.

    What it detects:
        The learning rate at each optimizer step against the configured one:
        the share of observed steps at or below ``low_share`` of it, and
        whether it is still there now. A warmup that ramps up, or a decay
        that reaches 0 at the planned end, does not count.

    Why it flattens predictions:
        A learning rate of zero is a frozen model: the fresh head keeps its
        near-constant initial output. Common ways to get there: a wrong
        ``num_training_steps`` (steps per epoch instead of total, or a count
        of examples instead of batches), warmup longer than training, a
        per-epoch scheduler stepped every batch, a per-step warmup schedule
        that Lightning steps once per epoch (its default without
        ``"interval": "step"``; ``where`` is then that setting), ``lr=0``.

    Example:
        ``get_linear_schedule_with_warmup(opt, 0, num_training_steps=10)``
        when training runs for 1,000 steps.

    Fix:
        ``num_training_steps = epochs * len(train_loader) // accumulation``,
        warmup 5-10% of it, and step per-batch schedulers once per optimizer
        step (per-epoch ones once per epoch).
    """

    code = "O003"
    cause = "optim.lr_schedule"
    title = "Schedule drives the learning rate to (near) zero"
    severity = Severity.ERROR
    needs = ("optim",)

    low_share = 0.01     # learning rate at or below 1% of the configured one is effectively zero
    min_low_steps = 0.5  # share of observed steps spent there
    min_step = 5
    # schedules whose step counts epochs by convention: stepped about once per optimizer step, they decay
    # len(loader) times too fast, and the misplaced scheduler.step() call is the line to move
    epoch_schedulers = ("StepLR", "MultiStepLR", "ExponentialLR")
    per_batch_share = 0.8  # scheduler steps per optimizer step at or above this: stepped every batch
    rare_steps = 0.1  # scheduler steps per optimizer step below this, under Lightning's per-epoch default: too rare

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        pairs = o.lr.pairs()
        if s.step < self.min_step or not pairs:
            return None
        peak = peak_lr(o)
        if peak is None:
            return None
        floor = self.low_share * peak if peak > 0 else 0.0
        low = [st for st, v in pairs if v <= floor]
        share = len(low) / len(pairs)
        if share < self.min_low_steps or pairs[-1][1] > floor:
            return None
        since = low[0]
        where = o.scheduler_where if o.scheduler else (o.lr_where or o.where)
        if o.scheduler in self.epoch_schedulers and o.scheduler_steps >= self.per_batch_share * s.step \
                and o.scheduler_step_where is not None:
            where = o.scheduler_step_where  # an epoch schedule stepped every batch: the step() call is misplaced
        source = f"the {o.scheduler} schedule" if o.scheduler else "the optimizer's configuration"
        rarely = o.scheduler_cadence_where is not None and o.scheduler_steps < self.rare_steps * s.step
        if rarely:  # a per-step schedule that Lightning steps once per epoch: the interval is the line to edit
            where = o.scheduler_cadence_where
            source += (f", stepped {o.scheduler_steps} times in {s.step} optimizer steps: Lightning steps a scheduler "
                       "once per epoch unless its configuration says \"interval\": \"step\"")
        return self.finding(
            f"The learning rate is at or below {num(floor)} ({self.low_share:.0%} of {num(peak)}) for {share:.0%} "
            f"of the steps observed, since step {since}; {source} holds it there (now {num(pairs[-1][1])}).",
            confidence=0.9, where=where,
            evidence={"configured_lr": peak, "lr_now": pairs[-1][1], "low_share": round(share, 3),
                      "since_step": since, "scheduler": o.scheduler, "scheduler_steps": o.scheduler_steps},
            fix=LIGHTNING_FIX if rarely else
            "num_training_steps = epochs * len(train_loader); warmup = int(0.06 * num_training_steps)")
