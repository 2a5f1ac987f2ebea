"""What a learning-rate schedule says about the run's plan: its warmup and its total length, in optimizer steps.

The learning rate actually applied is read from the optimizer at every step
(:mod:`defib.evidence.watch.optim`); this reads what the schedule was *told*,
so that a rule can compare the two with the run's length. transformers'
``get_*_schedule_with_warmup`` (which the Trainer calls with its own
``max_steps`` and ``warmup_steps``, and which Lightning modules call with
``trainer.estimated_stepping_batches``) keep both numbers in the
``functools.partial`` they hand to ``LambdaLR``; ``OneCycleLR`` keeps them
as attributes. Anything else states no plan.
"""

from __future__ import annotations

import functools
from typing import Any


def schedule_plan(scheduler: Any) -> tuple[int | None, int | None, str] | None:
    """(planned steps, warmup steps, the schedule's name) as the schedule states them, None if it states neither."""
    for fn in getattr(scheduler, "lr_lambdas", None) or ():
        if isinstance(fn, functools.partial):
            total, warmup = fn.keywords.get("num_training_steps"), fn.keywords.get("num_warmup_steps")
            if total is not None or warmup is not None:
                name = getattr(fn.func, "__name__", "schedule").strip("_").removesuffix("_lr_lambda")
                return _steps(total), _steps(warmup), name
    if type(scheduler).__name__ == "OneCycleLR":
        total = getattr(scheduler, "total_steps", None)
        phases = getattr(scheduler, "_schedule_phases", None) or [{}]
        rise = phases[0].get("end_step")  # pct_start * total_steps - 1
        return _steps(total), (_steps(rise + 1) if rise is not None else None), "OneCycleLR"
    return None


def _steps(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
