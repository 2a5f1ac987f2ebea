"""The command line's promise for bad input, held by every command over one shared corpus of bad inputs.

README, "Exit codes": a usage or input error is exit 2 with one line on
stderr and no traceback. Here each case is one command run on one bad input
(a damaged file, a broken model folder, an output path that cannot be
written, a bad option) and must end exactly so: exit 2, one line of at most
300 characters with no control characters, no traceback, and nothing written:
no output file or folder, not even a partial or hidden one, and nothing next
to the input.

The corpus is built once per session; the commands run in this process
(typer's CliRunner), since each case fails at validation in well under a
second and a fresh Python importing torch would take seconds per case.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from defib.cli import app
from defib.cli_errors import MAX_ERROR_LINE

ROWS = [(f"a short text number {i}", i % 2) for i in range(40)]
BIG = 50 << 20  # the 50 MB line, field or header of the issue


def _csv(path: Path, rows=ROWS, header="text,label") -> Path:
    path.write_text(header + "\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    return path


def _arrow_folder(folder: Path, table: pa.Table, cut: bool) -> Path:
    """A ``save_to_disk`` folder; ``cut``: its .arrow file loses its second half."""
    folder.mkdir()
    name = "data-00000-of-00001.arrow"
    with pa.ipc.new_stream(str(folder / name), table.schema) as writer:
        writer.write_table(table)
    if cut:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": name}]}))
    return folder


class _Evil:
    def __reduce__(self):  # what a malicious pytorch_model.bin runs when unpickled
        return (print, ("this pickle ran",))


def _model_folders(root: Path, tiny: Path) -> dict[str, Path]:
    """A fine-tuned tiny model (as defib train writes one) and its damaged copies."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    trained = root / "trained"
    cfg = BertConfig.from_pretrained(tiny, num_labels=1, problem_type="regression")
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(trained)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(trained)
    meta = {"defib_train": 1, "labels": {"task": "regression", "names": [], "target_mean": 0.5, "target_std": 0.5},
            "columns": {"text": "text", "text_pair": None, "label": "label"}, "max_length": 32}
    (trained / "defib_train.json").write_text(json.dumps(meta))

    def copy(name: str, **files: bytes | str | None) -> Path:
        folder = root / name
        shutil.copytree(trained, folder)
        for file, content in files.items():
            path = folder / file.replace("__", ".")
            if content is None:
                path.unlink()
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        return folder

    weights = (trained / "model.safetensors").read_bytes()
    out = {"trained": trained,
           "safetensors_garbage": copy("safetensors_garbage", model__safetensors=weights[:1000]),
           "safetensors_cut": copy("safetensors_cut", model__safetensors=weights[: len(weights) // 2]),
           "config_broken": copy("config_broken", config__json='{"architectures": ["BertFor'),
           "config_list": copy("config_list", config__json="[1, 2]"),
           "meta_broken": copy("meta_broken", defib_train__json='{"labels": '),
           "meta_wrong_types": copy("meta_wrong_types", defib_train__json=json.dumps(dict(meta, max_length="long"))),
           "meta_no_classes": copy("meta_no_classes", defib_train__json=json.dumps(
               dict(meta, labels={"task": "classification", "names": [], "target_mean": 0, "target_std": 1}))),
           "tokenizer_broken": copy("tokenizer_broken", tokenizer__json="{not json"),
           "pickle_only": copy("pickle_only", model__safetensors=None)}
    torch.save({"weights": _Evil()}, out["pickle_only"] / "pytorch_model.bin")
    (root / "empty_model").mkdir()
    out["empty_model"] = root / "empty_model"
    return out


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, str]:
    """Every bad input of the table, by name (paths as strings, for the command lines)."""
    root = tmp_path_factory.mktemp("contract")
    d = root / "data"
    d.mkdir()
    p: dict[str, Path] = {"tiny": tiny_model_dir, "good": _csv(d / "good.csv")}
    body = ("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(3000))).encode()
    packed = gzip.compress(body)
    p["gz_truncated"] = d / "truncated.csv.gz"
    p["gz_truncated"].write_bytes(packed[: len(packed) // 2])
    table = pa.table({"text": [t for t, _ in ROWS], "label": [y for _, y in ROWS]})
    p["arrow_cut"] = _arrow_folder(d / "saved_cut", table, cut=True)
    p["long_line"] = d / "long_line.csv"
    p["long_line"].write_bytes(b"text,label\n" + b"x" * BIG)
    p["long_header"] = d / "long_header.csv"
    p["long_header"].write_bytes(b"h" * BIG)
    p["wide_header"] = d / "wide_header.csv"  # one column name of 500 kB: under the header limit, over any line
    p["wide_header"].write_bytes(b"text," + b"n" * 500_000 + b"\nhello,1\n")
    p["long_field_parquet"] = d / "long_field.parquet"
    pq.write_table(pa.table({"text": ["hello", "y" * BIG, "bye"], "label": [1.0, 0.0, 1.0]}), p["long_field_parquet"])
    p["dup_parquet"] = d / "dup.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["a", "b", "c", "d"]), pa.array([0, 1, 0, 1]), pa.array([1, 1, 0, 0])],
                                        names=["text", "label", "label"]), p["dup_parquet"])
    p["dup_csv"] = _csv(d / "dup.csv", [(f"{t},{y}", y) for t, y in ROWS], header="text,label,label")
    p["empty"] = d / "empty.csv"
    p["empty"].write_bytes(b"")
    p["header_only"] = _csv(d / "header_only.csv", [])
    p["utf16"] = d / "utf16.csv"
    p["utf16"].write_bytes("text,label\nhello,1\n".encode("utf-16"))
    p["garbage"] = d / "garbage.csv"
    p["garbage"].write_bytes(bytes(range(256)) * 64)
    p["nan_label"] = _csv(d / "nan_label.csv", [("a", 1), ("b", "nan"), ("c", 0), ("d", 1), ("e", 0), ("f", 1)])
    p["text_label"] = _csv(d / "text_label.csv", [("a", "high"), ("b", "low")] * 3)
    p["conll_no_tag"] = d / "no_tag.conll"
    p["conll_no_tag"].write_text("EU B-ORG\nrejects\n\n")
    p["conll_empty"] = d / "empty.conll"
    p["conll_empty"].write_bytes(b"")
    p["tags_not_list"] = d / "tags_not_list.jsonl"
    p["tags_not_list"].write_text('{"text": ["EU", "rejects"], "label": "B-ORG O"}\n')
    p["json_array"] = d / "rows.json"
    p["json_array"].write_text(json.dumps([{"text": "a", "label": 1}]))
    p["unknown_ext"] = d / "rows.xlsx"
    p["unknown_ext"].write_bytes(b"PK\x03\x04rest")
    p["no_data_dir"] = d / "no_data"
    p["no_data_dir"].mkdir()
    p["a_file"] = d / "a_file.txt"  # outputs "under" it cannot be written
    p["a_file"].write_text("not a folder")
    p["missing"] = d / "missing.csv"
    models = _model_folders(root / "models", tiny_model_dir)
    p.update(models)
    reports = root / "reports"
    reports.mkdir()
    for name, report in {"findings_str": {"findings": "L001"}, "findings_ints": {"findings": [1, 2]},
                         "finding_code_int": {"findings": [{"code": 5}]},
                         "severity_odd": {"findings": [{"code": "L001", "severity": "fatal"}]},
                         "steps_text": {"findings": [], "steps_observed": "many"},
                         "signals_text": {"findings": [], "signals": {"loss": {"step": [1], "value": ["x"]}}},
                         "check_report": {"findings": [], "check": {"rows": 3}}, "a_list": [1, 2]}.items():
        p[f"report_{name}"] = reports / f"{name}.json"
        p[f"report_{name}"].write_text(json.dumps(report))
    p["report_broken"] = reports / "broken.json"
    p["report_broken"].write_text('{"findings": [')
    p["python"] = Path(sys.executable)
    p["script"] = root / "train.py"
    p["script"].write_text("raise SystemExit('the script must never run here')\n")
    return {k: str(v) for k, v in p.items()}


# ---------------------------------------------------------------- the table: (name, command line)
CHECK = "check {data} --text text --label label --model {tiny} --json {out}/r.json --html {out}/r.html"
PREDICT = "predict {model} {data} --out {out}/p.csv --json {out}/p.json"
PROBE = "probe --model {model} --data {data} --json {out}/r.json --html {out}/r.html --rows 8"
TRAIN = "train {data} --text text --label label --model {model} --out {out}/model --no-progress"
DATA_FILES = ["gz_truncated", "arrow_cut", "dup_parquet", "dup_csv", "empty", "header_only", "utf16", "garbage",
              "json_array", "unknown_ext", "no_data_dir", "missing", "wide_header"]
CASES: list[tuple[str, str | list[str]]] = []
CASES += [(f"check-{f}", CHECK.replace("{data}", "{%s}" % f)) for f in DATA_FILES + [
    "long_line", "long_header", "long_field_parquet", "nan_label", "conll_no_tag", "conll_empty", "tags_not_list"]]
CASES += [(f"predict-{f}", PREDICT.replace("{model}", "{trained}").replace("{data}", "{%s}" % f))
          for f in DATA_FILES[:-1] + ["long_header", "long_field_parquet"]]
CASES += [(f"probe-{f}", PROBE.replace("{model}", "{tiny}").replace("{data}", "{%s}" % f))
          for f in ["gz_truncated", "arrow_cut", "dup_parquet", "garbage", "nan_label", "missing"]]
CASES += [(f"train-{f}", TRAIN.replace("{model}", "{tiny}").replace("{data}", "{%s}" % f))
          for f in ["gz_truncated", "arrow_cut", "dup_parquet", "dup_csv", "garbage", "header_only", "missing"]]
CASES += [
    ("train-nan-label-as-classes", TRAIN.replace("{model}", "{tiny}").replace("{data}", "{nan_label}") + " --task classification"),
    ("train-nan-label-in-dev", TRAIN.replace("{model}", "{tiny}").replace("{data}", "{good}") + " --dev {nan_label}"),
    ("train-token-task", TRAIN.replace("{model}", "{tiny}").replace("{data}", "{good}") + " --task token_classification"),
    ("probe-token-task", PROBE.replace("{model}", "{tiny}").replace("{data}", "{good}") + " --task token_classification"),
    ("train-text-labels-as-regression", TRAIN.replace("{model}", "{tiny}").replace("{data}", "{text_label}") + " --task regression"),
]
# model folders
MODELS = ["safetensors_garbage", "safetensors_cut", "config_broken", "config_list", "tokenizer_broken", "pickle_only",
          "empty_model", "missing", "a_file"]
CASES += [(f"predict-model-{m}", PREDICT.replace("{model}", "{%s}" % m).replace("{data}", "{good}"))
          for m in MODELS + ["meta_broken", "meta_wrong_types", "meta_no_classes", "tiny"]]
CASES += [(f"probe-model-{m}", PROBE.replace("{model}", "{%s}" % m).replace("{data}", "{good}")) for m in MODELS]
CASES += [(f"train-model-{m}", TRAIN.replace("{model}", "{%s}" % m).replace("{data}", "{good}"))
          for m in ["safetensors_garbage", "safetensors_cut", "config_broken", "empty_model", "missing"]]
# output paths that cannot be written: a folder where a file goes, a path under a regular file
CASES += [
    ("predict-out-is-a-folder", "predict {trained} {good} --out {out}"),
    ("predict-out-under-a-file", "predict {trained} {good} --out {a_file}/p.csv"),
    ("predict-json-under-a-file", "predict {trained} {good} --out {out}/p.csv --json {a_file}/p.json"),
    ("predict-json-is-a-folder", "predict {trained} {good} --out {out}/p.csv --json {out}"),
    ("probe-json-under-a-file", "probe --model {tiny} --data {good} --json {a_file}/r.json"),
    ("probe-html-is-a-folder", "probe --model {tiny} --data {good} --json {out}/r.json --html {out}"),
    ("check-json-under-a-file", CHECK.replace("{data}", "{good}").replace("--json {out}", "--json {a_file}")),
    ("train-out-under-a-file", "train {good} --text text --label label --model {tiny} --out {a_file}/model"),
    ("train-out-is-a-file", "train {good} --text text --label label --model {tiny} --out {a_file} --overwrite"),
    ("run-json-under-a-file", "run --json {a_file}/r.json -- {python} {script}"),
    ("confirm-json-under-a-file", "confirm {report_findings_str} --json {a_file}/r.json -- {python} {script}"),
]
# reports that are not what defib confirm reads
CASES += [(f"confirm-{r}", "confirm {report_%s} --json {out}/r.json -- {python} {script}" % r)
          for r in ["findings_str", "findings_ints", "finding_code_int", "severity_odd", "steps_text", "signals_text",
                    "check_report", "a_list", "broken"]]
CASES += [("confirm-missing-report", "confirm {missing} -- {python} {script}"),
          ("confirm-no-command", "confirm {report_findings_str}")]
# options and commands
CASES += [
    ("check-unknown-task", CHECK.replace("{data}", "{good}") + " --task ranking"),
    ("check-two-char-delimiter", CHECK.replace("{data}", "{good}") + " --delimiter ::"),
    ("check-fail-on-odd", CHECK.replace("{data}", "{good}") + " --fail-on never"),
    ("check-missing-model-option", "check {good} --text text --label label"),
    ("check-column-with-escapes", ["check", "{good}", "--text", "\x1b[31mred\x1b[0m\nsecond line", "--label", "label",
                                   "--model", "{tiny}"]),
    ("check-huge-column-name", ["check", "{good}", "--text", "c" * 100_000, "--label", "label", "--model", "{tiny}"]),
    ("predict-zero-batch", PREDICT.replace("{model}", "{trained}").replace("{data}", "{good}") + " --batch-size 0"),
    ("predict-unknown-option", PREDICT.replace("{model}", "{trained}").replace("{data}", "{good}") + " --bogus"),
    ("probe-too-few-rows", PROBE.replace("{model}", "{tiny}").replace("{data}", "{good}") + " --rows 3"),
    ("probe-unknown-task", PROBE.replace("{model}", "{tiny}").replace("{data}", "{good}") + " --task ranking"),
    ("train-unknown-loss", TRAIN.replace("{model}", "{tiny}").replace("{data}", "{good}") + " --loss hinge"),
    ("train-dev-share-above-one", TRAIN.replace("{model}", "{tiny}").replace("{data}", "{good}") + " --dev-share 2"),
    ("train-zero-epochs", TRAIN.replace("{model}", "{tiny}").replace("{data}", "{good}") + " --epochs 0"),
    ("train-label-column-as-text", "train {good} --text label --label label --model {tiny} --out {out}/model"),
    ("predict-text-column-as-pair", PREDICT.replace("{model}", "{trained}").replace("{data}", "{good}")
     + " --text text --text-pair text"),
    ("probe-label-column-as-text", PROBE.replace("{model}", "{tiny}").replace("{data}", "{good}") + " --text label"),
    ("check-label-column-as-text", CHECK.replace("{data}", "{good}").replace("--text text", "--text label")),
    ("run-no-command", "run --json {out}/r.json"),
    ("run-script-missing", "run --json {out}/r.json -- {python} {missing}"),
    ("run-command-missing", "run --json {out}/r.json -- no-such-program-defib"),
    ("run-negative-steps", "run --steps -1 -- {python} {script}"),
    ("rule-unknown", "rule Q999"),
    ("rule-with-escapes", ["rule", "\x1b]0;title\x07\u202eX001"]),
    ("rules-unknown-option", "rules --bogus"),
    ("no-such-command", "frobnicate"),
]
# the built-in sample cannot be fetched: no package index answers, and nothing is cached
NO_INDEX = {"PIP_INDEX_URL": "http://127.0.0.1:9/", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
            "PIP_CONFIG_FILE": os.devnull, "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": ""}
CASES += [("probe-sample-without-index", "probe --model {trained} --json {out}/r.json")]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60 and len({name for name, _ in CASES}) == len(CASES)
    commands = {(argv if isinstance(argv, list) else argv.split())[0] for _, argv in CASES}
    assert {"check", "predict", "probe", "train", "confirm", "run", "rule", "rules"} <= commands


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("name, argv", CASES, ids=[name for name, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(name, argv, corpus, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    fill = dict(corpus, out=str(out))
    args = [a.format(**fill) for a in argv] if isinstance(argv, list) else shlex.split(argv.format(**fill))
    env = {"HF_HUB_OFFLINE": "1", "COLUMNS": "200", "DEFIB_CACHE": str(tmp_path / "cache")}
    if name == "probe-sample-without-index":
        env.update(NO_INDEX)
    root = Path(corpus["good"]).parents[1]
    before = _listing(root)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args, env=env)
    shown = f"exit {result.exit_code}\n--- stdout\n{result.stdout[-2000:]}\n--- stderr\n{result.stderr[-2000:]}"
    assert result.exit_code == 2, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, shown
    line = lines[0]
    assert line.startswith("defib: error: ") and len(line) <= MAX_ERROR_LINE, shown
    assert line.isprintable(), f"control characters reach the terminal: {line!r}"
    assert "unexpected error" not in line, f"no command turned this into a message of its own: {line}"
    assert "Traceback" not in result.stdout + result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), shown
    assert _listing(out) == [], "an output (or a partial one) was left behind"
    assert _listing(root) == before, "something was written next to the inputs"
    assert set(os.listdir(tmp_path)) <= {"cache", "out"}, "something was written in the working folder"


# ---------------------------------------------------------------- the one error line, and the one reader
def test_an_error_line_escapes_control_characters_and_keeps_both_ends_of_a_long_message():
    from defib.cli_errors import error_line

    line = error_line("bad name '\x1b[2J\nrm -rf ~\u202e' " + "x" * 10_000 + " ; pass --text NAME")
    assert len(line) == MAX_ERROR_LINE and line.isprintable(), line
    assert line.startswith("defib: error: bad name '\\x1b[2J\\nrm -rf ~\\u202e' xxx")
    assert line.endswith(" ; pass --text NAME") and " [...] " in line
    assert error_line("short") == "defib: error: short"


FORMATS = ["csv", "tsv", "jsonl", "parquet", "csv.gz", "save_to_disk"]


def _write(folder: Path, fmt: str) -> Path:
    """The same 40 rows in one format."""
    table = pa.table({"text": [t for t, _ in ROWS], "label": [float(y) + 0.5 * (i % 3) for i, (_, y) in enumerate(ROWS)]})
    if fmt == "save_to_disk":
        return _arrow_folder(folder / "saved", table, cut=False)
    path = folder / f"rows.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    else:
        sep = "\t" if fmt == "tsv" else ","
        body = f"text{sep}label\n" + "".join(f"{r['text']}{sep}{r['label']}\n" for r in table.to_pylist())
        path.write_bytes(gzip.compress(body.encode()) if fmt.endswith(".gz") else body.encode())
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_train_predict_and_probe_read_every_format(fmt, corpus, tmp_path):
    """One reader: every command takes every format, and reads the same 40 rows from it."""
    from defib.evidence.probes.sample_file import read_rows
    from defib.train import pipeline

    data = _write(tmp_path, fmt)
    runner = CliRunner()
    env = {"HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    check = runner.invoke(app, ["check", str(data), "--text", "text", "--label", "label", "--model", corpus["tiny"],
                                "--json", str(tmp_path / "check.json"), "--quiet"], env=env)
    assert check.exit_code in (0, 1), check.stderr
    assert json.loads((tmp_path / "check.json").read_text())["check"]["rows"] == len(ROWS)
    predict = runner.invoke(app, ["predict", corpus["trained"], str(data), "--out", str(tmp_path / "p.csv")], env=env)
    assert predict.exit_code == 0, predict.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == len(ROWS) + 1
    texts, labels, task = read_rows(data, "text", "label", rows=len(ROWS))
    assert len(texts) == len(labels) == len(ROWS) and task == "regression"
    prep = pipeline.prepare(pipeline.TrainOptions(data=data, text="text", label="label", model=corpus["tiny"],
                                                  out=tmp_path / "model"))
    assert len(prep.train) + len(prep.dev) == len(ROWS) and prep.space.task == "regression"
