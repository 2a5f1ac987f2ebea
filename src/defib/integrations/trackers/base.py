"""What defib writes into an experiment tracker, whichever it is: a few series and the findings, as text.

The values are the ones the rules judge by, read from the signals at an
evaluation point (no tensor is touched): the prediction spread against the
target spread, the loss against the constant-predictor baseline, and the
learning rate the optimizer applied. Each tracker module turns them into its
own calls (:class:`Tracker`); all names start with ``defib/`` so that they
sit apart from the run's own.
"""

from __future__ import annotations

import abc
import math
from typing import Any

PREFIX = "defib/"
FINDINGS_TAG = PREFIX + "findings"


def series(s: Any) -> dict[str, float]:
    """The latest value of each defib series (``s``: the watcher's ``Signals``); missing or non-finite ones left out.

    ``pred_std`` / ``target_std``: the within-batch prediction std and the
    targets' std (regression; the flatline rule compares them);
    ``spread_ratio``: their ratio (classification: predicted-class entropy /
    label entropy), 0 for a flat model, about 1 for a healthy one; ``loss`` /
    ``baseline_loss``: the recent mean loss and the loss of always predicting
    the mean (or the prior); ``lr``: the largest learning rate applied.
    """
    values: dict[str, float | None] = {}
    p = s.preds
    if p is not None:
        if p.task != "classification":
            values.update(pred_std=p.batch_std, target_std=p.target_std)
        values.update(spread_ratio=p.spread.last, loss=p.loss_window.last, baseline_loss=p.baseline.last)
    if s.optim is not None:
        values["lr"] = s.optim.lr.last
    return {PREFIX + k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}


def finding_text(f: Any) -> str:
    """One finding as a short Markdown paragraph: code, severity, title, this run's numbers, the line, the fix."""
    text = f"**{f.code}** ({f.severity}) {f.title}: {f.message}"
    if f.where is not None:
        text += f" At `{f.where.file}:{f.where.line}`: `{f.where.code}`."
    if f.fix:
        text += f" Fix: {f.fix}"
    return text


class Tracker(abc.ABC):
    """One run of the user's tracker that defib writes into.

    ``key`` tells runs apart (a writer, a run id): a tracker object is made
    once per run and keeps what it set up there.
    """

    name = ""

    def __init__(self, key: Any):
        self.key = key

    def open(self) -> bool:
        """Whether the run still takes writes (a closed writer, a finished run do not)."""
        return True

    @abc.abstractmethod
    def write(self, step: int, values: dict[str, float], findings: list[tuple[int, str]]) -> None:
        """Write ``values`` at ``step``, and each finding's text at the step it first fired."""
