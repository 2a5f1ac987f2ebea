"""The two value types every stage's signals share: a place in the user's code and a bounded series."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Where:
    """A place in the user's own code where defib saw the culprit call."""

    file: str
    line: int
    code: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Series:
    """A (step, value) series that keeps at most ``cap`` points.

    When full, every second point is dropped and the keep-stride doubles, so
    the series always spans the whole run at an even resolution (the first
    point is never lost). Appends are O(1) amortised.
    """

    def __init__(self, cap: int = 512):
        self.cap = cap
        self.stride = 1
        self.steps: list[int] = []
        self.values: list[float] = []
        self._count = 0
        self.last: float | None = None
        self.last_step: int | None = None

    def add(self, step: int, value: float) -> None:
        self.last, self.last_step = float(value), step
        if self._count % self.stride == 0:
            self.steps.append(step)
            self.values.append(float(value))
            if len(self.steps) > self.cap:
                self.steps = self.steps[::2]
                self.values = self.values[::2]
                self.stride *= 2
        self._count += 1

    def __len__(self) -> int:
        return len(self.values)

    def set_last(self, value: float) -> None:
        """Replace the latest value (a statistic reduced across ranks after it was recorded)."""
        self.last = float(value)
        if self.steps and self.steps[-1] == self.last_step:
            self.values[-1] = float(value)

    def pairs(self) -> list[tuple[int, float]]:
        out = list(zip(self.steps, self.values))
        if self.last_step is not None and (not out or out[-1][0] != self.last_step):
            out.append((self.last_step, self.last))
        return out

    def to_dict(self) -> dict[str, list]:
        pts = self.pairs()
        return {"step": [p[0] for p in pts], "value": [None if not math.isfinite(p[1]) else p[1] for p in pts]}
