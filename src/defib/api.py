"""The one-line API: ``with defib.watch(model, optimizer) as w: ...``, and ``defib.probe(model, tokenizer, data)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from defib.diagnosis import Diagnosis
from defib.evidence.distributed import is_main_process
from defib.evidence.hooks import Installed, install
from defib.evidence.watch import Watcher
from defib.integrations.notebook import CellWatch, in_notebook
from defib.integrations.trackers import TrackerLog
from defib.stages.run import LiveDiagnosis, final_diagnosis, run_extra, run_report, stderr_announce

if TYPE_CHECKING:
    from defib.evidence.probes import Budget


class watch:  # noqa: N801 - used like a function: ``with defib.watch(...)``
    """Watch the training that happens inside the ``with`` block (or between start/stop).

    ``model`` and ``optimizer`` are optional: defib finds the model from its
    first forward call and the optimizer from its first step. Pass them when a
    process holds several models and you want this one. ``ignore``: rule
    codes left out of the diagnosis (``--ignore``). ``log_to``: the
    experiment tracker that gets defib's series and findings (``auto``: the
    TensorBoard writer, MLflow or W&B run the process already has;
    ``tensorboard``, ``mlflow``, ``wandb``: that one only; ``none``). After the
    block, ``w.diagnosis`` holds the result; ``w.report()`` prints it.

    In a notebook (Jupyter, VS Code, Colab) a live line under the cell
    follows the run in place of the announcements on stderr, the block's end
    shows the diagnosis under the cell, and a watch ends with the cell that
    started it, however the cell ends (an error, the stop button).
    """

    def __init__(self, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None, *,
                 sample_every: int = 10, announce: Callable[[str], None] | None = stderr_announce,
                 ignore: tuple[str, ...] = (), log_to: str = "auto"):
        self.watcher = Watcher(model, optimizer, sample_every=sample_every)
        if announce is stderr_announce and in_notebook():
            announce = None  # the live line says it, in place
        self.ignore = tuple(c.upper() for c in ignore)
        self._live = LiveDiagnosis(self.watcher, announce, ignore=self.ignore)
        self.trackers = TrackerLog(self._live, log_to)
        self._installed: Installed | None = None
        self._cell: CellWatch | None = None
        self.diagnosis: Diagnosis | None = None
        self.shown: Any = None  # in a notebook, the display of the diagnosis under the cell (updated by %%defib --confirm)

    @property
    def running(self) -> bool:
        """Started and not stopped: the hooks are installed."""
        return self._installed is not None

    def start(self) -> "watch":
        if self._installed is None:
            self._installed = install(self.watcher)
            self.trackers.install()
            if in_notebook():
                self._cell = CellWatch(self.watcher, self._live, self.stop)
        return self

    def stop(self) -> Diagnosis:
        if self._installed is not None:
            self._installed.remove()
            self._installed = None
            self.trackers.remove()
            self.watcher.detach()
        self.diagnosis = final_diagnosis(self._live)
        self.diagnosis.extra.update(run_extra(self.watcher))  # the series: a notebook draws the plots from them
        if self._cell is not None:
            self._cell.close(self.diagnosis)
            self._cell = None
        return self.diagnosis

    def __enter__(self) -> "watch":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        shown = self._cell is not None
        diagnosis = self.stop()
        if shown:
            from IPython.display import display

            self.shown = display(diagnosis, display_id=True)

    def to_dict(self) -> dict:
        """The JSON report's dict: the diagnosis, what was observed, and the recorded series (``signals``) for plots."""
        return run_report(self.diagnosis or final_diagnosis(self._live), self.watcher)

    def write_html(self, path: str) -> None:
        """Write the HTML report (verdict, findings, plots) of what was watched, as ``defib run --html`` does.

        Under ``torchrun`` only rank 0 writes: the ranks share their statistics,
        and several processes writing one path would clobber each other.
        """
        from defib.report.html import write_html

        if is_main_process():
            write_html(self.to_dict(), path)

    def report(self) -> None:
        """Print the terminal report (rank 0 only under ``torchrun``: one diagnosis per job, not per rank)."""
        from defib.report.text import print_report

        if is_main_process():
            print_report(self.diagnosis or final_diagnosis(self._live))


def probe(model: nn.Module, tokenizer: Any, batch_or_data: Any, *, labels: Any = None, task: str | None = None,
          optimizer: torch.optim.Optimizer | None = None, loss_fn: Callable | None = None,
          budget: Budget | None = None, progress: Callable | None = None, source: str = "caller's data",
          ignore: tuple[str, ...] = ()) -> Diagnosis:
    """Ask the model directly, before (or instead of) a training run; returns a diagnosis.

    ``batch_or_data``: a list of texts, a list of (text, text) pairs (tokenized
    with ``tokenizer``), or a tokenized batch (a dict with ``input_ids``, and
    ``labels`` unless given). ``task``: "regression" or "classification"
    (default: one output per row is a regression). ``optimizer``: yours, so
    that its class and learning rate are what the probes test (its state is
    restored); without it AdamW at the LR sweep's suggestion. ``loss_fn(outputs,
    labels)``: yours, else MSE / cross-entropy. Everything the probes touch
    (weights, grads, modes, optimizer, RNGs) is restored afterwards. The
    diagnosis' ``extra["probe"]`` holds the LR curve, the per-group gradient
    norms and the other measurements.
    """
    from defib.stages.probe import probe_diagnosis

    return probe_diagnosis(model, tokenizer, batch_or_data, labels=labels, task=task, optimizer=optimizer,
                           loss_fn=loss_fn, budget=budget, progress=progress, source=source, ignore=ignore)
