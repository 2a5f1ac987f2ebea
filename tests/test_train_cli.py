"""``defib train`` + ``defib predict`` end to end on the tiny BERT, and their bad-input errors.

The tiny model learns the synthetic score (positive minus negative words) in
a few epochs at lr 3e-3; the real recipe's figures are in bench/train.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from rules.helpers import sentences
from support import run_defib


def _write_csv(path: Path, rows: list[tuple], header: tuple[str, ...]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def regression_csv(tmp_path: Path) -> Path:
    return _write_csv(tmp_path / "train.csv", [(t, s + 0.5) for t, s in sentences(600)], ("text", "score"))


def test_train_then_predict_regression(tiny_model_dir, tmp_path, regression_csv):
    out = tmp_path / "model"
    r = run_defib(tmp_path, "train", str(regression_csv), "--text", "text", "--label", "score", "--model",
                  str(tiny_model_dir), "--out", str(out), "--epochs", "4", "--lr", "3e-3", "--no-progress")
    assert r.returncode == 0, r
    assert "targets standardised" in r.stdout and "HEALTHY" in r.stdout, r
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "defib_report.json", "defib_train.json",
                                                      "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert not list(tmp_path.glob(".model.*")), "the work folder must be gone"
    meta = json.loads((out / "defib_train.json").read_text())
    assert meta["labels"]["task"] == "regression" and meta["loss"] == "mse"
    assert meta["dev_metrics"]["pearson"] > 0.6, meta["dev_metrics"]
    assert json.loads((out / "defib_report.json").read_text())["verdict"] == "healthy"

    preds = tmp_path / "preds.csv"
    p = run_defib(tmp_path, "predict", str(out), str(regression_csv), "--out", str(preds))
    assert p.returncode == 0, p
    with open(preds, newline="") as fh:
        got = list(csv.DictReader(fh))
    truth = np.array([s + 0.5 for _, s in sentences(600)])
    pred = np.array([float(row["prediction"]) for row in got])
    assert len(pred) == 600
    assert np.corrcoef(pred, truth)[0, 1] > 0.6
    # mapped back to the user's scale, not left standardised
    assert abs(pred.mean() - truth.mean()) < 0.5 * truth.std() and pred.std() > 0.4 * truth.std()


def test_imbalanced_classes_get_focal_weighted_loss_and_probabilities(tiny_model_dir, tmp_path):
    rows = [(t, "pos" if s > 1 else "neg" if s < -1 else "mixed") for t, s in sentences(300)]
    data = _write_csv(tmp_path / "cls.csv", rows, ("review", "label"))
    out = tmp_path / "cls_model"
    r = run_defib(tmp_path, "train", str(data), "--text", "review", "--label", "label", "--model", str(tiny_model_dir),
                  "--out", str(out), "--epochs", "1", "--lr", "3e-3", "--no-progress")
    assert r.returncode in (0, 1), r
    assert "imbalanced, so focal loss (gamma 2) with class weights (balanced)" in r.stdout, r
    assert "macro_f1" in r.stdout
    meta = json.loads((out / "defib_train.json").read_text())
    assert meta["loss"] == "focal" and meta["labels"]["names"] == ["mixed", "neg", "pos"]
    weights = meta["class_weights"]
    assert weights[0] < weights[1] and weights[0] < weights[2]  # "mixed" is the common class
    p = run_defib(tmp_path, "predict", str(out), str(data), "--out", str(tmp_path / "p.csv"))
    assert p.returncode == 0, p
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "row,prediction,p_mixed,p_neg,p_pos"


def _cli(*args: str):
    """``defib ARGS`` in this process (bad input fails before any model is loaded)."""
    from typer.testing import CliRunner

    from defib.cli import app

    return CliRunner().invoke(app, list(args))


def _one_line_error(result, *expected: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.startswith("defib: error: ") and "\n" not in err and "Traceback" not in err, err
    for text in expected:
        assert text in err, err


@pytest.mark.parametrize("case, expected", [
    ("missing_column", ["no column 'sentence'", "--text", "'text', 'score'"]),
    ("labels_not_numbers", ["row 1", "not a finite number"]),
    ("dev_other_columns", ["dev.csv", "no column 'text'"]),
    ("out_exists", ["already exists", "--overwrite"]),
    ("model_missing", ["--model", "no such model folder"]),
    ("hub_name_offline", ["not in the local hub cache"]),
    ("loss_for_other_task", ["--loss ce is for classification"]),
    ("nothing_to_resume", ["--resume: no checkpoint"]),
])
def test_bad_train_input_is_one_line_exit_2_and_writes_nothing(tiny_model_dir, tmp_path, regression_csv, case,
                                                               expected):
    out = tmp_path / "out"
    base = {"--text": "text", "--label": "score", "--model": str(tiny_model_dir), "--out": str(out)}
    data, extra = regression_csv, []
    if case == "missing_column":
        base["--text"] = "sentence"
    elif case == "labels_not_numbers":
        data = _write_csv(tmp_path / "bad.csv", [("a text", "high"), ("b text", "low")], ("text", "score"))
        extra = ["--task", "regression"]
    elif case == "dev_other_columns":
        extra = ["--dev", str(_write_csv(tmp_path / "dev.csv", [("x", 1.0)], ("sentence", "score")))]
    elif case == "out_exists":
        out.mkdir()
        (out / "mine.txt").write_text("the user's file")
    elif case == "model_missing":
        base["--model"] = str(tmp_path / "no_such_model")
    elif case == "hub_name_offline":
        base["--model"] = "bert-base-uncased-not-cached"
    elif case == "loss_for_other_task":
        extra = ["--loss", "ce", "--task", "regression"]
    elif case == "nothing_to_resume":
        extra = ["--resume"]
    args = [x for kv in base.items() for x in kv]
    _one_line_error(_cli("train", str(data), *args, *extra), *expected)
    if case == "out_exists":
        assert (out / "mine.txt").read_text() == "the user's file"
    else:
        assert not out.exists()
    assert not list(tmp_path.glob(".out.*"))


def test_predict_refuses_a_bare_encoder_and_a_folder_that_is_no_model(tiny_model_dir, tmp_path, regression_csv):
    _one_line_error(_cli("predict", str(tiny_model_dir), str(regression_csv), "--out", str(tmp_path / "p.csv"),
                         "--text", "text"), "head was never trained")
    _one_line_error(_cli("predict", str(tmp_path), str(regression_csv), "--out", str(tmp_path / "p.csv")),
                    "not a transformers model folder")
    assert not (tmp_path / "p.csv").exists()


def test_class_weights_balanced_and_sqrt_keep_the_mean_example_weight_at_one():
    import numpy as np

    from defib.train.labels import class_weights

    counts = np.array([530, 80, 390])
    balanced, sqrt = class_weights(counts), class_weights(counts, how="sqrt")
    assert balanced == pytest.approx(counts.sum() / (3 * counts))               # scikit-learn's "balanced"
    for w in (balanced, sqrt):
        assert float((counts * w).sum()) == pytest.approx(counts.sum(), rel=1e-5)  # the loss keeps its size
    assert sqrt[1] / sqrt[0] == pytest.approx((530 / 80) ** 0.5, rel=1e-5)      # half the log-ratio
    assert class_weights(np.array([100, 90])) is None                         # not imbalanced: no weights
    bad = _cli("train", "x.csv", "--text", "t", "--label", "l", "--model", "m", "--out", "o",
               "--class-weights", "inverse")
    _one_line_error(bad, "--class-weights inverse", "balanced, sqrt")
