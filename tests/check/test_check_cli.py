"""``defib check`` end to end: every file format gives the same check, the report contract, exit codes."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from checkrun import defib_check

ROWS = [(f"review {i}: the plot was {'good' if i % 3 else 'bad'} and the actors {'shine' if i % 2 else 'fade'}",
         "pos" if i % 3 else "neg") for i in range(120)]


def _table() -> pa.Table:
    return pa.table({"text": [t for t, _ in ROWS], "label": [y for _, y in ROWS], "other": list(range(len(ROWS)))})


def write_all_formats(folder):
    """The same rows as CSV, TSV, UTF-8-with-BOM CSV, gzipped CSV, JSON Lines, Parquet and a save_to_disk folder."""
    out = {}
    lines = ["text,label,other"] + [f'"{t}",{y},{i}' for i, (t, y) in enumerate(ROWS)]
    out["csv"] = folder / "data.csv"
    out["csv"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    out["bom"] = folder / "bom.csv"
    out["bom"].write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    out["gz"] = folder / "data.csv.gz"
    out["gz"].write_bytes(gzip.compress(out["csv"].read_bytes()))
    out["tsv"] = folder / "data.tsv"
    with open(out["tsv"], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["text", "label", "other"])
        w.writerows([(t, y, i) for i, (t, y) in enumerate(ROWS)])
    out["jsonl"] = folder / "data.jsonl"
    out["jsonl"].write_text("".join(json.dumps({"text": t, "label": y, "other": i}) + "\n"
                                    for i, (t, y) in enumerate(ROWS)), encoding="utf-8")
    out["parquet"] = folder / "data.parquet"
    pq.write_table(_table(), out["parquet"], row_group_size=50)
    saved = folder / "saved"
    saved.mkdir()
    table = _table()
    for k, part in enumerate((table.slice(0, 70), table.slice(70))):
        with pa.OSFile(str(saved / f"data-0000{k}-of-00002.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, part.schema) as writer:
                writer.write_table(part, max_chunksize=32)
    (saved / "state.json").write_text(json.dumps({"_data_files": [{"filename": f"data-0000{k}-of-00002.arrow"}
                                                                   for k in range(2)], "_split": "train"}))
    out["saved"] = saved
    return out


def test_every_format_gives_the_same_check(tmp_path, tiny_model_dir):
    files = write_all_formats(tmp_path)
    checks = {}
    for kind, path in files.items():
        r = defib_check(path, "--text", "text", "--label", "label", "--model", tiny_model_dir,
                        json_path=tmp_path / f"{kind}.json")
        assert r.code == 0 and r.report is not None, (kind, r)
        c = r.report["check"]
        checks[kind] = (c["rows"], c["task"], c["labels"], c["token_lengths"]["counts"])
    assert checks["csv"][0] == len(ROWS)
    assert checks["csv"][2] == {"kind": "classification", "counts": {"pos": 80, "neg": 40}}
    for kind, got in checks.items():
        assert got == checks["csv"], kind


def test_report_contract_and_check_section(tmp_path, tiny_model_dir):
    path = tmp_path / "scores.csv"
    path.write_text("a,b,score\n" + "".join(f"first {i},second {i * 7},{i % 50 * 2.5}\n" for i in range(200)))
    r = defib_check(path, "--text", "a", "--text-pair", "b", "--label", "score", "--model", tiny_model_dir,
                    json_path=tmp_path / "r.json")
    rep = r.report
    assert set(rep) >= {"defib_version", "verdict", "task", "steps_observed", "flatline", "findings",
                        "confirmed_fixes", "check"}
    assert rep["task"] == "regression" and rep["steps_observed"] == 0 and rep["flatline"] is None
    c = rep["check"]
    assert c["rows"] == 200 and c["task_inferred"] is True and c["max_length"] == 64
    assert c["text_columns"] == ["a", "b"] and "fractional" in c["task_reason"]
    t = c["token_lengths"]
    assert len(t["bin_edges"]) == len(t["counts"]) + 1 and sum(t["counts"]) == 200 and 64 in t["bin_edges"]
    lab = c["labels"]
    assert lab["kind"] == "regression" and sum(lab["counts"]) == 200 and len(lab["bin_edges"]) == len(lab["counts"]) + 1
    assert lab["mean"] == pytest.approx(61.25) and lab["std"] > 30
    d106 = next(f for f in rep["findings"] if f["code"] == "D106")  # targets 0..122.5: the scale warning
    assert d106["severity"] == "warning" and rep["verdict"] == "at_risk"
    assert r.code == 0  # warnings alone do not fail by default
    assert "task regression (inferred" in r.stdout and "rows checked" in r.stdout


def test_fail_on_and_ignore(tmp_path, tiny_model_dir):
    path = tmp_path / "imbalanced.csv"
    path.write_text("text,label\n" + "".join(f"text number {i},{int(i % 10 == 0)}\n" for i in range(100)))
    base = [path, "--text", "text", "--label", "label", "--model", tiny_model_dir]
    assert defib_check(*base).code == 0
    assert defib_check(*base, "--fail-on", "warning").code == 1
    assert defib_check(*base, "--fail-on", "warning", "--ignore", "D107").code == 0
    const = tmp_path / "const.csv"
    const.write_text("text,label\n" + "".join(f"text number {i},1\n" for i in range(50)))
    r = defib_check(const, "--text", "text", "--label", "label", "--model", tiny_model_dir, "--quiet")
    assert r.code == 1 and r.stdout.startswith("defib: AT RISK")


def test_task_given_and_label_counts_for_multilabel_jsonl(tmp_path, tiny_model_dir):
    path = tmp_path / "tags.jsonl"
    path.write_text("".join(json.dumps({"t": f"text {i}", "tags": ["a", "b"] if i % 2 else ["c"]}) + "\n"
                            for i in range(60)))
    r = defib_check(path, "--text", "t", "--label", "tags", "--model", tiny_model_dir, json_path=tmp_path / "r.json")
    c = r.report["check"]
    assert c["task"] == "multilabel" and c["labels"] == {"kind": "multilabel", "counts": {"a": 30, "b": 30, "c": 30}}


def test_as_a_real_process(tmp_path, tiny_model_dir):
    path = tmp_path / "data.csv"
    path.write_text("text,label\n" + "".join(f"text number {i},{i % 2}\n" for i in range(40)))
    cmd = [sys.executable, "-m", "defib.cli", "check", str(path), "--text", "text", "--label", "label",
           "--model", str(tiny_model_dir)]
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    ok = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "HEALTHY" in ok.stdout, ok.stderr
    bad = subprocess.run(cmd[:5] + ["--text", "txt"] + cmd[7:], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "did you mean 'text'" in bad.stderr


def test_json_lists_in_a_csv_are_multilabel(tmp_path, tiny_model_dir):
    path = tmp_path / "tags.csv"
    path.write_text("text,tags\n" + "".join(f'text {i},"[{i % 2}, 1, 0]"\n' for i in range(40)))
    r = defib_check(path, "--text", "text", "--label", "tags", "--model", tiny_model_dir, json_path=tmp_path / "r.json")
    c = r.report["check"]
    assert c["task"] == "multilabel" and c["labels"]["counts"] == {"0": 20, "1": 40, "2": 0}
    assert "D104" not in {f["code"] for f in r.report["findings"]}  # label 0 varies: not constant


def test_html_report_of_a_check(tmp_path, tiny_model_dir):
    files = write_all_formats(tmp_path)
    page = tmp_path / "check.html"
    r = defib_check(files["csv"], "--text", "text", "--label", "label", "--model", tiny_model_dir, "--html", page)
    assert r.code == 0, r
    html = page.read_text(encoding="utf-8")
    assert html.count("<svg") >= 2  # the token-length histogram and the label distribution
    assert "max_length" in html
