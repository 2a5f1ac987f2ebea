"""Fixed-size samples that keep a data check's memory flat, whatever the row count.

- :class:`UniformSample`: a uniform sample of numbers (bottom-k by random
  priority), for a label histogram and its quantiles.
- :class:`KeyedSample`: rows sampled *by key* (a hash of the text, or of the
  ids): every row with a kept key is kept, so groups of equal keys (duplicate
  texts, texts that truncate to the same ids) stay whole, and their counts,
  multiplied by :attr:`KeyedSample.scale`, estimate the full data's.
"""

from __future__ import annotations

import numpy as np


class UniformSample:
    """At most ``size`` values, each row equally likely to be in it."""

    def __init__(self, size: int = 100_000, seed: int = 0):
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.priority = np.empty(0)
        self.values = np.empty(0)

    def add(self, values: np.ndarray) -> None:
        priority = np.concatenate([self.priority, self.rng.random(len(values))])
        pool = np.concatenate([self.values, values.astype(np.float64, copy=False)])
        if len(pool) > self.size:
            keep = np.argpartition(priority, self.size)[:self.size]
            priority, pool = priority[keep], pool[keep]
        self.priority, self.values = priority, pool


class KeyedSample:
    """(key, value, row) triples for keys whose lowest ``shift`` bits are zero; ``shift`` grows to stay under ``size``."""

    def __init__(self, size: int = 2_000_000):
        self.size = size
        self.shift = 0
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.count = 0

    @property
    def scale(self) -> int:
        """How many rows each kept row stands for."""
        return 1 << self.shift

    def _kept(self, keys: np.ndarray) -> np.ndarray:
        return (keys & np.int64(self.scale - 1)) == 0

    def add(self, keys: np.ndarray, values: np.ndarray, rows: np.ndarray) -> None:
        if self.shift:
            m = self._kept(keys)
            keys, values, rows = keys[m], values[m], rows[m]
        if len(keys):
            self.parts.append((keys, values, rows))
            self.count += len(keys)
        while self.count > self.size:
            self.shift += 1
            self.parts = [(k[m], v[m], r[m]) for k, v, r in self.parts for m in [self._kept(k)]]
            self.count = sum(len(k) for k, _, _ in self.parts)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, values, rows) sorted by key, then row."""
        if not self.parts:
            empty = np.empty(0, dtype=np.int64)
            return empty, np.empty(0), empty
        keys = np.concatenate([k for k, _, _ in self.parts])
        values = np.concatenate([v for _, v, _ in self.parts])
        rows = np.concatenate([r for _, _, r in self.parts])
        order = np.lexsort((rows, keys))
        return keys[order], values[order], rows[order]


def groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and size of each run of equal keys in a sorted array."""
    if len(keys) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    sizes = np.diff(np.concatenate([starts, [len(keys)]]))
    return starts, sizes
