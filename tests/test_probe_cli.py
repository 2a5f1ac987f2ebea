"""``defib probe`` end to end on the tiny checkpoint: a CSV and a JSONL file, the JSON report, bad input."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "rules"))
from helpers import sentences  # noqa: E402
from support import run_defib  # noqa: E402


def _csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["sentence", "score"])
        for text, y in sentences(64, seed=3):
            w.writerow([text, y + 0.5])  # fractional scores: a regression
    return path


def test_probe_csv_writes_report(tmp_path, tiny_model_dir):
    data = _csv(tmp_path / "rows.csv")
    out = tmp_path / "probe.json"
    res = run_defib(tmp_path, "probe", "--model", str(tiny_model_dir), "--data", str(data), "--text", "sentence",
                    "--label", "score", "--json", str(out), "--html", str(tmp_path / "probe.html"))
    assert res.returncode in (0, 1), res
    report = json.loads(out.read_text())
    assert report["task"] == "regression" and report["verdict"] in ("healthy", "at_risk")
    curve = report["probe"]["lr_range"]
    assert len(curve["lrs"]) == len(curve["losses"]) > 5 and curve["suggested_lr"] > 0
    assert {"embeddings", "layer.0", "layer.1", "head"} <= set(report["probe"]["grad_norms"])
    assert "probe of 64 rows" in res.stdout
    page = (tmp_path / "probe.html").read_text()
    assert 'id="plot-lr-range"' in page and 'id="plot-probe-grad-norm"' in page and "Could not draw" not in page


def test_probe_jsonl_classification(tmp_path, tiny_model_dir):
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": "pos" if y > 0 else "neg"})
                              for t, y in sentences(32, seed=4)), encoding="utf-8")
    out = tmp_path / "probe.json"
    res = run_defib(tmp_path, "probe", "--model", str(tiny_model_dir), "--data", str(data), "--json", str(out))
    assert res.returncode in (0, 1), res
    assert json.loads(out.read_text())["task"] == "classification"


def test_missing_model_is_one_line_exit_2(tmp_path):
    res = run_defib(tmp_path, "probe", "--model", "sentence-transformers/all-MiniLM-L6-v2", timeout=60)
    assert res.returncode == 2 and "model folder not found" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_missing_column_is_one_line_exit_2(tmp_path, tiny_model_dir):
    data = _csv(tmp_path / "rows.csv")
    res = run_defib(tmp_path, "probe", "--model", str(tiny_model_dir), "--data", str(data), "--text", "sentence", "--label", "nope")
    assert res.returncode == 2 and "no column 'nope'" in res.stderr and "Traceback" not in res.stderr
