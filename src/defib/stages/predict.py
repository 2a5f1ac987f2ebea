"""The predict stage (``defib predict``): measure a model's own predictions and run the predict-stage rules (E0xx)."""

from __future__ import annotations

from typing import Any

import numpy as np

from defib.diagnosis import Diagnosis, diagnose
from defib.evidence.predictions import measure_predictions
from defib.signals.predict import PredictSignals


def predict_diagnosis(task: str, max_length: int, texts: list[Any], ids: list[list[int]], outputs: np.ndarray,
                      values: list[Any], ignore: tuple[str, ...] = ()) -> tuple[PredictSignals, Diagnosis]:
    """The predictions' signals and their diagnosis; ``texts`` are the inputs (a text, or a pair) in row order."""
    signals = measure_predictions(task, max_length, texts, ids, outputs, values)
    return signals, diagnose(signals, stage="predict", ignore=ignore)
