"""The predict stage (``defib predict``): measure a model's own predictions and run the predict-stage rules (E0xx).

Its report is the diagnosis plus a ``predict`` section, what was measured on
the predictions, so that a saved report read again (``defib report``) says
it is a prediction run of so many rows, not a training run that saw no step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from defib.diagnosis import Diagnosis, diagnose
from defib.evidence.predictions import measure_predictions
from defib.signals.predict import PredictSignals


def predict_diagnosis(task: str, max_length: int, texts: list[Any], ids: list[list[int]], outputs: np.ndarray,
                      values: list[Any], ignore: tuple[str, ...] = (),
                      lengths: list[int] | None = None) -> tuple[PredictSignals, Diagnosis]:
    """The predictions' signals and their diagnosis; ``texts`` are the inputs (a text, or a pair) in row order.

    ``lengths``: see :func:`~defib.evidence.predictions.measure_predictions`.
    """
    signals = measure_predictions(task, max_length, texts, ids, outputs, values, lengths)
    diagnosis = diagnose(signals, stage="predict", ignore=ignore)
    diagnosis.extra["predict"] = predict_section(signals)
    return signals, diagnosis


def predict_section(s: PredictSignals) -> dict[str, Any]:
    """The prediction measurements for the JSON report (the findings cite the same numbers as evidence)."""
    return {"rows": s.rows, "output_spread": s.output_spread, "top_class": s.top_class,
            "top_class_share": s.top_class_share, "distinct_texts": s.distinct_texts,
            "distinct_encodings": s.distinct_encodings, "rows_at_max_length": s.rows_at_max_length,
            "max_length": s.max_length}
