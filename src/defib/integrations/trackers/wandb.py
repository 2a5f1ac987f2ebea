"""Weights & Biases: defib's series and findings in the run ``wandb.init`` started, on defib's own step axis.

``wandb.log`` advances the run's step, which belongs to the script: defib's
rows are logged with ``commit=False``, so they join the script's next row
instead of adding rows, and carry ``defib/step`` (defib's optimizer step),
declared the step axis of every ``defib/`` series. The findings are a text
value at the evaluation point where they first fired.
"""

from __future__ import annotations

import sys
from typing import Any

from defib.integrations.trackers.base import FINDINGS_TAG, PREFIX, Tracker

STEP_KEY = PREFIX + "step"


def current_run() -> Any:
    """``wandb.run``, or None (also when the run never imported wandb)."""
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, run: Any):
        super().__init__(run.id)
        self.run = run
        self._axis = False

    def write(self, step: int, values: dict[str, float], findings: list[tuple[int, str]]) -> None:
        if not self._axis:
            self.run.define_metric(STEP_KEY)
            self.run.define_metric(PREFIX + "*", step_metric=STEP_KEY)
            self._axis = True
        row: dict[str, Any] = {STEP_KEY: step, **values}
        if findings:
            row[FINDINGS_TAG] = "\n\n".join(f"step {at}: {text}" for at, text in findings)
        self.run.log(row, commit=False)
