"""Bounded-memory statistics: a run of a million steps costs what a run of a thousand does.

The bounded series the signals keep is :class:`defib.signals.common.Series`; these are the watcher's
running moments and windows behind it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Moments:
    """Streaming mean / variance / min / max (Chan's parallel update)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, x: np.ndarray) -> None:
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        n_b, mean_b = x.size, float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))

    @property
    def var(self) -> float:
        return self.m2 / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.var) if self.n else math.nan


@dataclass
class Window:
    """The most recent ``cap`` scalars (predictions or targets), as one array."""

    cap: int = 256
    buf: deque = field(default_factory=deque)

    def extend(self, x: np.ndarray) -> None:
        for v in x.ravel()[-self.cap:].tolist():
            self.buf.append(v)
        while len(self.buf) > self.cap:
            self.buf.popleft()

    def array(self) -> np.ndarray:
        return np.fromiter(self.buf, dtype=np.float64, count=len(self.buf))

    def __len__(self) -> int:
        return len(self.buf)


MAD_TO_STD = 1.4826  # median absolute deviation x this = std, for normal data


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation; 0 when either side is constant."""
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0  # a constant prediction correlates with nothing


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (what Spearman's rho needs)."""
    order = np.argsort(x, kind="mergesort")
    out = np.empty(len(x), dtype=np.float64)
    out[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=out)
    return sums[inverse] / counts[inverse]


def rel_spread(x: torch.Tensor) -> float:
    """How different the rows of ``x`` (N, D) are, relative to their size.

    Mean over dimensions of a robust across-row spread (the median absolute
    deviation, scaled to a std), divided by the RMS of ``x``. 0 means every
    row is the same vector (a collapsed representation); rows of independent
    noise give about 1. The median makes it blind to dropout: identical
    vectors under dropout differ only where a few rows were zeroed, so most
    rows still agree in every dimension and the MAD stays 0, where a plain
    std would report the dropout noise as spread.

    Computed where ``x`` lives (in float64), and only the two numbers come
    back: moving a GPU batch's hidden states to the host to take medians there
    cost more than the rest of a sampled step.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        return math.nan
    x = x.detach().to(torch.float64)
    mad = _row_median((x - _row_median(x)).abs())
    rms, spread = torch.stack([x.pow(2).mean().sqrt(), mad.mean()]).tolist()
    if rms == 0 or not math.isfinite(rms):
        return 0.0 if rms == 0 else math.nan
    return float(MAD_TO_STD * spread / rms)


def _row_median(x: torch.Tensor) -> torch.Tensor:
    """The median over rows, as numpy takes it (the mean of the two middle values).

    On the CPU numpy's partition is several times faster than torch's sort (or
    ``quantile``); on a GPU the sort stays on the device.
    """
    if x.device.type == "cpu":
        return torch.from_numpy(np.median(x.numpy(), axis=0))
    ordered = x.sort(dim=0).values
    n = x.shape[0]
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
