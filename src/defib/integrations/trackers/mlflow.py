"""MLflow: defib's series as metrics and its findings as a text artifact, in the run the script already has open.

The run is the one ``mlflow.start_run`` made active (the Trainer's
``MLflowCallback`` starts one the same way), looked up at each evaluation
point: a run started after the watch began is found, a finished one is left
alone. Lightning's ``MLFlowLogger`` keeps its run off that stack; its
callback hands the run over (``TrackerLog.give``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from defib.integrations.trackers.base import PREFIX, Tracker

FINDINGS_FILE = PREFIX + "findings.md"  # artifact path inside the run


def active_run_id() -> str | None:
    """The active fluent run's id, or None (also when the run never imported mlflow)."""
    mlflow = sys.modules.get("mlflow")
    run = mlflow.active_run() if mlflow is not None else None
    return run.info.run_id if run is not None else None


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, run_id: str, client: Any = None):
        super().__init__(run_id)
        if client is None:
            from mlflow.tracking import MlflowClient  # mlflow is imported already: the run has an active run

            client = MlflowClient()  # the tracking URI the script set, as the fluent calls use
        self.client = client
        self.run_id = run_id
        self.lines: list[str] = []

    def write(self, step: int, values: dict[str, float], findings: list[tuple[int, str]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])
        if findings:  # MLflow metrics are numbers: the findings go to one Markdown file, rewritten as they come
            self.lines += [f"- step {at}: {text}" for at, text in findings]
            self.client.log_text(self.run_id, "\n".join(self.lines) + "\n", FINDINGS_FILE)
