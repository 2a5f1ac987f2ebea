"""The end of ``defib train``: dev classes the model never predicts get a warning line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from defib.train.metrics import classification
from defib.train.pipeline import TrainResult
from defib.train.summary import final_table, missed_classes_warning


def _result(metrics: dict, loss: str = "ce") -> TrainResult:
    return TrainResult(out=Path("model"), task="classification", loss=loss, metrics=metrics, wall_s=1.0,
                       train_s=1.0, samples_per_s=10.0, epochs_run=1.0, best_step=None)


def test_classification_metrics_count_the_dev_classes_never_predicted():
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    two_of_three = classification(np.array([0, 0, 1, 1, 1, 0, 0, 1]), y, 3)
    assert two_of_three["classes_missed"] == 1 and two_of_three["min_class_f1"] == 0.0
    assert two_of_three["classes_predicted"] == 2
    # a class absent from the dev set is not "missed", even if the model never predicts it either
    assert classification(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), 3)["classes_missed"] == 0


def test_a_missed_class_gets_a_warning_with_what_to_try():
    metrics = classification(np.array([0, 0, 1, 1, 1, 0, 0, 1]), np.array([0, 0, 0, 1, 1, 1, 2, 2]), 3)
    line = missed_classes_warning(_result(metrics, loss="ce"))
    assert line is not None and "1 class of the dev set never predicted" in line and "--loss focal" in line
    focal = missed_classes_warning(_result(metrics, loss="focal"))
    assert focal is not None and "--loss focal" not in focal and "more --epochs" in focal
    console = Console(record=True, width=200)
    final_table(_result(metrics), console)
    assert "never predicted" in console.export_text()


def test_every_class_predicted_stays_silent():
    metrics = classification(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), 3)
    assert metrics["classes_missed"] == 0
    assert missed_classes_warning(_result(metrics)) is None
    console = Console(record=True, width=200)
    final_table(_result(metrics), console)
    assert "never predicted" not in console.export_text()
