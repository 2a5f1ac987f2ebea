"""Number formatting shared by rule messages and evidence."""

from __future__ import annotations

import math


def num(x: float | None, digits: int = 3) -> str:
    """A short human number, 'n/a' for missing or non-finite."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}"


def rnd(x: float | None, digits: int = 5) -> float | None:
    """A JSON-safe rounded number (None for missing or non-finite)."""
    if x is None or not math.isfinite(float(x)):
        return None
    return float(f"{float(x):.{digits}g}")


def last(series) -> float | None:
    """The most recent value of a Series, or None."""
    return None if series is None else series.last


def recent(series, n: int = 5) -> list[float]:
    """The last ``n`` finite values of a Series."""
    if series is None:
        return []
    return [v for _, v in series.pairs()[-n:] if math.isfinite(v)]
