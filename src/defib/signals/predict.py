"""What ``defib predict`` measures on its own predictions, for the predict-stage rules (E0xx)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PredictSignals:
    """One prediction run: the model's raw outputs against the predictions it reports."""

    task: str
    rows: int = 0
    output_spread: float | None = None        # std across rows of the raw outputs, centred per row for classes
    top_class_share: float | None = None      # classification: share of rows predicted as the commonest class
    top_class: str | None = None
    distinct_texts: int = 0                   # distinct inputs (text, or text pair)
    distinct_encodings: int = 0               # distinct token-id rows after tokenization
    collisions: list[tuple[int, int]] = field(default_factory=list)  # a few (row, row) pairs: texts differ, ids equal
    rows_at_max_length: int = 0
    max_length: int | None = None
    step: int = 0                             # no training here; the engine stamps findings with it
