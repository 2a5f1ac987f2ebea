"""The one-line API: ``with defib.watch(model, optimizer) as w: ...``."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from defib.diagnosis import Diagnosis
from defib.evidence.hooks import Installed, install
from defib.evidence.watch import Watcher, stderr_announce


class watch:  # noqa: N801 - used like a function: ``with defib.watch(...)``
    """Watch the training that happens inside the ``with`` block (or between start/stop).

    ``model`` and ``optimizer`` are optional: defib finds the model from its
    first forward call and the optimizer from its first step. Pass them when a
    process holds several models and you want this one. After the block,
    ``w.diagnosis`` holds the result; ``w.report()`` prints it.
    """

    def __init__(self, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None, *,
                 sample_every: int = 10, announce: Callable[[str], None] | None = stderr_announce):
        self.watcher = Watcher(model, optimizer, sample_every=sample_every, announce=announce)
        self._installed: Installed | None = None
        self.diagnosis: Diagnosis | None = None

    def start(self) -> "watch":
        if self._installed is None:
            self._installed = install(self.watcher)
        return self

    def stop(self) -> Diagnosis:
        if self._installed is not None:
            self._installed.remove()
            self._installed = None
            self.watcher.detach()
        self.diagnosis = self.watcher.diagnose()
        return self.diagnosis

    def __enter__(self) -> "watch":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def to_dict(self) -> dict:
        """The diagnosis as the JSON report's dict, with the recorded series (``signals``) for plots."""
        from defib.evidence.child import export_signals

        out = (self.diagnosis or self.watcher.diagnose()).to_dict()
        out["signals"] = export_signals(self.watcher.s)
        return out

    def write_html(self, path: str) -> None:
        """Write the HTML report (verdict, findings, plots) of what was watched, as ``defib run --html`` does."""
        from defib.report.html import write_html

        write_html(self.to_dict(), path)

    def report(self) -> None:
        from defib.report.text import print_report

        print_report(self.diagnosis or self.watcher.diagnose())
