"""What the Trainer and Lightning callbacks share: one watch, started at train begin, reported at train end.

The callbacks only translate their framework's events into these calls; the
watching itself is :class:`defib.watch` (global hooks plus the framework-free
:class:`~defib.evidence.watch.Watcher`, diagnosed by :mod:`defib.stages.run`), exactly as in a plain
PyTorch loop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defib.api import watch
from defib.diagnosis import Diagnosis
from defib.stages.run import stderr_announce


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer | None:
    """The torch optimizer inside accelerate's / Lightning's wrappers (they keep it as ``.optimizer``)."""
    seen = 0
    while optimizer is not None and not _plain_optimizer(optimizer) and seen < 4:
        optimizer = getattr(optimizer, "optimizer", None)
        seen += 1
    return optimizer if _plain_optimizer(optimizer) else None


def _plain_optimizer(optimizer: Any) -> bool:
    return isinstance(optimizer, torch.optim.Optimizer) and type(optimizer).__module__.startswith("torch.")


class WatchSession:
    """One watched training run inside a framework's fit/train call."""

    def __init__(self, *, json_path: str | os.PathLike | None, report: bool, sample_every: int, announce: bool,
                 ignore: tuple[str, ...] = (), log_to: str = "auto"):
        self.json_path = Path(json_path) if json_path is not None else None
        self.report = report
        self.sample_every = sample_every
        self.announce = announce
        self.ignore = ignore
        self.log_to = log_to
        self.watch: watch | None = None
        self.diagnosis: Diagnosis | None = None

    def begin(self, model: nn.Module | None, optimizer: Any, loader: Any = None, scheduler: Any = None,
              loggers: tuple[Any, ...] = ()) -> None:
        """Start watching; the loader, scheduler and loggers were built before the callback ran, so announce them."""
        if self.watch is not None and self.watch.running:
            return
        self.watch = watch(model, unwrap_optimizer(optimizer), sample_every=self.sample_every,
                           announce=stderr_announce if self.announce else None, ignore=self.ignore,
                           log_to=self.log_to).start()
        self.watch.trackers.give(loggers)
        w = self.watch.watcher
        if loader is not None:
            loaders = _loaders(loader)
            for inner in loaders:
                w.data.loader_created(inner)
            w.data.loader_iter(loaders[0])  # Lightning starts iterating before on_train_start
        if scheduler is not None:
            w.optim.scheduler_created(scheduler)

    def end(self, is_main_process: bool = True) -> Diagnosis | None:
        """Stop watching; the main process prints the report and writes the JSON."""
        if self.watch is None:
            return self.diagnosis
        self.diagnosis = self.watch.stop()
        report = self.watch.to_dict() if self.json_path is not None else None
        self.watch = None
        if is_main_process:
            if report is not None:
                from defib.report import json as json_report

                json_report.write(report, self.json_path)
            if self.report:
                from defib.report.text import print_report

                print_report(self.diagnosis)
        return self.diagnosis


class WatchingCallback:
    """The part of both callbacks that is not framework glue: options, the session, the result."""

    def __init__(self, *, json_path: str | os.PathLike | None = None, report: bool = True, sample_every: int = 10,
                 announce: bool = True, ignore: tuple[str, ...] = (), log_to: str = "auto"):
        self._session = WatchSession(json_path=json_path, report=report, sample_every=sample_every,
                                     announce=announce, ignore=ignore, log_to=log_to)

    @property
    def diagnosis(self) -> Diagnosis | None:
        """The run's diagnosis, once training has ended."""
        return self._session.diagnosis

    @property
    def watcher(self):
        """The live watcher while training runs (None before and after)."""
        return self._session.watch.watcher if self._session.watch is not None else None


def _loaders(loader: Any) -> list[Any]:
    """The DataLoader and any DataLoader it wraps (accelerate's shards keep the original as ``base_dataloader``)."""
    out = []
    while loader is not None and len(out) < 4:
        out.append(loader)
        loader = getattr(loader, "base_dataloader", None)
    return out
