"""Measurements several optimizer rules share (what other areas use too is in :mod:`defib.rules.measures`)."""

from __future__ import annotations

import math
import statistics

from defib.signals.run import OptimSignals

# the weights pretraining put there; not the pooler, a dense layer after them that many checkpoints never trained
# (sentence-transformers drops it) and that steps like a fresh head when it is the only one adapted
ENCODER_PREFIXES = ("layer.", "embeddings", "encoder")


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


