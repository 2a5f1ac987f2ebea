"""defib's series and findings in the experiment tracker the run already logs to: TensorBoard, MLflow, W&B.

``log_to``: ``auto`` (the default) writes into every tracker run the watched
process already has; a tracker's name writes into that one only; ``none``
writes nothing. defib never starts a tracker run and never imports a tracker
library the run did not import (it looks in ``sys.modules``). It writes at
the watcher's evaluation points only, never per step: the first one, then
each while its writing has cost under ``SHARE`` of the run's time since the
watch began (a point over it writes nothing, unless a finding is new). A tracker
that raises is noted as an internal error (X001) and written to no more: the
run never sees the error.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Iterable

from defib.integrations.trackers.base import Tracker, finding_text, series
from defib.integrations.trackers.mlflow import MlflowTracker, active_run_id
from defib.integrations.trackers.tensorboard import TensorBoardTracker, Writers
from defib.integrations.trackers.wandb import WandbTracker, current_run

if TYPE_CHECKING:
    from defib.diagnosis import Diagnosis
    from defib.stages.run import LiveDiagnosis

LOG_TO = ("auto", "tensorboard", "mlflow", "wandb", "none")
SHARE = 0.005  # the series' writing stays under this share of the run's time (the issue's bound is 1%)


class TrackerLog:
    """Writes a live diagnosis' series and new findings into the run's trackers at each evaluation point."""

    def __init__(self, live: LiveDiagnosis, log_to: str = "auto"):
        if log_to not in LOG_TO:
            raise ValueError(f"log_to must be one of {', '.join(LOG_TO)}, not {log_to!r}")
        self.live = live
        self.log_to = log_to
        self.writers = Writers()
        self.seconds = 0.0  # spent writing (and finding the trackers), for the cost bound
        self._trackers: dict[tuple[str, Any], Tracker] = {}
        self._given: list[Tracker] = []
        self._broken: set[tuple[str, Any]] = set()
        self._written: set[tuple[str, int | None]] = set()  # (code, first step) of the findings written
        self._points = 0  # evaluation points written (the first always is, whatever finding the trackers cost)
        if log_to != "none":
            live.watcher.s.config["trackers"] = []  # the trackers written to, for the report's "observed"
            live.on_diagnosis(self.log)

    def install(self) -> TrackerLog:
        """Start noticing the ``SummaryWriter`` objects the run builds (no-op unless TensorBoard may be written)."""
        if self.log_to in ("auto", "tensorboard"):
            started = time.perf_counter()
            try:
                self.writers.install()
            except Exception as exc:  # never the run's problem: TensorBoard just goes unwritten
                self.live.watcher.record_internal_error("log_to tensorboard", exc)
            self.seconds += time.perf_counter() - started
        return self

    def remove(self) -> None:
        self.writers.remove()

    def give(self, loggers: Iterable[Any]) -> None:
        """The runs of Lightning's loggers (its ``MLFlowLogger`` is not MLflow's active run)."""
        for logger in loggers:
            kind = type(logger).__name__
            try:
                if kind == "MLFlowLogger" and logger.run_id is not None:
                    self._given.append(MlflowTracker(logger.run_id, logger.experiment))
                elif kind == "TensorBoardLogger":
                    self._given.append(TensorBoardTracker(logger.experiment))
            except Exception as exc:  # a logger that cannot say its run: noted, and the training goes on
                self.live.watcher.record_internal_error(f"log_to {kind}", exc)

    def log(self, step: int, d: Diagnosis) -> None:
        """The evaluation point's callback: write the series (within the cost bound) and the new findings."""
        from defib.diagnosis import INTERNAL_CODE
        from defib.evidence.distributed import is_main_process

        if not is_main_process():
            return  # under torchrun the ranks share their figures; the trackers are rank 0's
        started = time.perf_counter()
        watcher = self.live.watcher
        new = [f for f in d.findings if f.code != INTERNAL_CODE and (f.code, f.step) not in self._written]
        if self._points and not new and self.seconds > SHARE * (time.time() - watcher.started):
            return
        self._points += 1
        values = series(watcher.s)
        texts = [(f.step if f.step is not None else step, finding_text(f)) for f in new]
        used = watcher.s.config["trackers"]
        try:
            trackers = self._find()
        except Exception as exc:  # a tracker library that fails to answer is the same: noted, never raised
            watcher.record_internal_error("log_to", exc)
            trackers = []
        for tracker in trackers:
            try:
                tracker.write(step, values, texts)
            except Exception as exc:  # the tracker's problem never becomes the run's
                self._broken.add((tracker.name, tracker.key))
                watcher.record_internal_error(f"log_to {tracker.name}", exc)
            else:
                if tracker.name not in used:
                    used.append(tracker.name)
        self._written.update((f.code, f.step) for f in new)
        self.seconds += time.perf_counter() - started

    def _find(self) -> list[Tracker]:
        """The runs to write into now: the ones given, then the ones the process has open."""
        wanted = self.log_to
        found = [t for t in self._given if wanted in ("auto", t.name)]
        names = {t.name for t in found}
        if wanted in ("auto", "tensorboard") and "tensorboard" not in names:
            writer = self.writers.current()
            if writer is not None:
                found.append(self._tracker(TensorBoardTracker, writer))
        if wanted in ("auto", "mlflow") and "mlflow" not in names:
            run_id = active_run_id()
            if run_id is not None:
                found.append(self._tracker(MlflowTracker, run_id))
        if wanted in ("auto", "wandb"):
            run = current_run()
            if run is not None:
                found.append(self._tracker(WandbTracker, run, key=run.id))
        return [t for t in found if (t.name, t.key) not in self._broken and t.open()]

    def _tracker(self, cls: type[Tracker], handle: Any, key: Any = None) -> Tracker:
        """One tracker object per run, kept: it remembers what it set up there."""
        key = (cls.name, handle if key is None else key)
        if key not in self._trackers:
            self._trackers[key] = cls(handle)
        return self._trackers[key]


def from_env(live: LiveDiagnosis) -> None:
    """``defib run``'s side: the ``--log-to`` the parent passed down (``_boot`` calls this once torch is imported)."""
    from defib.stages.run import LOG_TO_ENV

    TrackerLog(live, os.environ.get(LOG_TO_ENV) or "auto").install()
