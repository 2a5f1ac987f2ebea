"""Measurements several optimizer rules share (what other areas use too is in :mod:`defib.rules.measures`)."""

from __future__ import annotations

import math
import statistics

from defib.rules import thresholds
from defib.signals.run import OptimSignals, Signals

ENCODER_PREFIXES = ("layer.", "embeddings", "encoder", "pooler")


def median_update_ratio(o: OptimSignals, encoder_only: bool = False) -> float | None:
    """Median |dw|/|w| over all sampled steps and groups (optionally the encoder's only)."""
    values = [v for group, series in o.update_ratio.items()
              if not encoder_only or group.startswith(ENCODER_PREFIXES)
              for _, v in series.pairs() if math.isfinite(v)]
    return statistics.median(values) if values else None


def peak_update_ratio(o: OptimSignals) -> float | None:
    """The largest per-step median |dw|/|w| across the encoder's groups (its worst sampled step)."""
    by_step: dict[int, list[float]] = {}
    for group, series in o.update_ratio.items():
        if group.startswith(ENCODER_PREFIXES):
            for step, v in series.pairs():
                if math.isfinite(v):
                    by_step.setdefault(step, []).append(v)
    return max((statistics.median(vs) for vs in by_step.values()), default=None)


def lr_now(o: OptimSignals) -> float | None:
    return o.lr.last


def peak_lr(o: OptimSignals) -> float | None:
    """The learning rate the user configured: at construction, or the highest seen."""
    seen = [v for _, v in o.lr.pairs() if math.isfinite(v)]
    candidates = [v for v in o.lr_initial if math.isfinite(v)] + seen
    return max(candidates) if candidates else None


def not_learning(s: Signals) -> bool:
    """After the grace period the loss is still no better than the constant predictor's (S001's loss criterion)."""
    p = s.preds
    if p is None or s.step < thresholds.GRACE_STEPS:
        return False
    loss, base = p.loss_window.last, p.baseline.last
    return loss is not None and base is not None and math.isfinite(loss) and loss >= thresholds.NOT_LEARNING * base


def collapsed(s: Signals) -> bool:
    """Predictions already flat (the S001 spread criterion without its grace period)."""
    p = s.preds
    if p is None or not len(p.spread):
        return False
    last = p.spread.last
    return last is not None and (not math.isfinite(last) or last < thresholds.FLAT_SPREAD)
