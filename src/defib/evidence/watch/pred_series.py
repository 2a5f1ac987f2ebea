"""The prediction series the report plots, built from a window of predictions at one step (see loss.py)."""

from __future__ import annotations

import math

import numpy as np

from defib.signals.common import Series
from defib.signals.run import MAX_PLOTTED_CLASSES, QUANTILES


def add_quantiles(into: dict[str, Series], step: int, x: np.ndarray) -> None:
    """Percentiles of a window at one step: the prediction and target distributions over time, for the report."""
    if x.size:
        for q, v in zip(QUANTILES, np.percentile(x, QUANTILES)):
            into.setdefault(f"p{q}", Series()).add(step, float(v))


def add_class_shares(into: dict[str, Series], step: int, counts: dict[int, int], total: int) -> None:
    """Share of each predicted class in the window at one step (the first MAX_PLOTTED_CLASSES, the rest as "other")."""
    other = 0
    for cls, n in counts.items():
        if cls < MAX_PLOTTED_CLASSES:
            into.setdefault(str(cls), Series()).add(step, n / total)
        else:
            other += n
    if other:
        into.setdefault("other", Series()).add(step, other / total)
    for name, series in into.items():  # a class no longer predicted drops to 0, not to its last share
        if series.last_step != step:
            series.add(step, 0.0)


def entropy_share(pred: dict[int, int], labels: dict[int, int]) -> float:
    """Entropy of the predicted classes over the entropy of the labels (0: one class always)."""

    def entropy(counts: dict[int, int]) -> float:
        c = np.array([v for v in counts.values() if v > 0], dtype=np.float64)
        if c.sum() == 0:
            return 0.0
        q = c / c.sum()
        return float(-(q * np.log(q)).sum())

    h_labels = entropy(labels)
    return entropy(pred) / h_labels if h_labels > 0 else math.nan
