"""What ``defib train`` and ``defib predict`` print: defib's own lines, not transformers' bars and metric dicts.

The runs here keep transformers' default verbosity (the other tests silence
it through TRANSFORMERS_VERBOSITY), since that is what a user sees. Also:
train's --json/--html/--ignore/--max-steps, and an interrupted train that
says how to --resume.
"""

from __future__ import annotations

import json
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TRAIN_ROWS = "text,label\n" + "".join(f"sentence {i} about {'cats' if i % 2 else 'dogs'},{i % 2}\n" for i in range(80))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_VERBOSITY"}
    return {**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _defib(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "defib.cli", *args], capture_output=True, text=True, env=_env(),
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def unpretrained_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A tiny BERT with every LayerNorm at its default init: a watched run finds M001 (not pretrained)."""
    from transformers import AutoConfig, AutoTokenizer, BertModel

    out = tmp_path_factory.mktemp("unpretrained")
    BertModel(AutoConfig.from_pretrained(tiny_model_dir)).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, unpretrained_dir: Path):
    """One ``defib train --no-progress --max-steps 3 --json --html`` run: (folder, completed process)."""
    root = tmp_path_factory.mktemp("train")
    (root / "d.csv").write_text(TRAIN_ROWS, encoding="utf-8")
    proc = _defib(root, "train", "d.csv", "--model", str(unpretrained_dir), "--out", "model", "--epochs", "2",
                  "--max-steps", "3", "--no-progress", "--json", "r.json", "--html", "r.html")
    return root, proc


def test_train_prints_no_metric_dicts_and_no_bars(trained):
    root, proc = trained
    assert proc.returncode in (0, 1), proc.stderr
    assert "defib train" in proc.stdout and "dev metric" in proc.stdout
    assert "{'" not in proc.stdout and "eval_loss" not in proc.stdout  # the Trainer's raw log dicts
    assert "Loading weights" not in proc.stderr and "it/s" not in proc.stderr and "[transformers]" not in proc.stderr


def test_train_writes_the_reports_it_is_asked_for_and_stops_at_max_steps(trained):
    root, proc = trained
    report = json.loads((root / "r.json").read_text())
    assert report["steps_observed"] == 3
    assert "M001" in {f["code"] for f in report["findings"]}  # the control for the --ignore test below
    assert "<html" in (root / "r.html").read_text()[:200].lower()
    assert json.loads((root / "model" / "defib_train.json").read_text())["options"]["max_steps"] == 3


def test_train_ignore_leaves_the_rule_out(tmp_path, unpretrained_dir):
    (tmp_path / "d.csv").write_text(TRAIN_ROWS, encoding="utf-8")
    proc = _defib(tmp_path, "train", "d.csv", "--model", str(unpretrained_dir), "--out", "model", "--max-steps", "3",
                  "--no-progress", "--ignore", "m001", "--json", "r.json")
    assert proc.returncode in (0, 1), proc.stderr
    assert "M001" not in {f["code"] for f in json.loads((tmp_path / "r.json").read_text())["findings"]}


def test_predict_prints_no_loading_bar(trained):
    root, _ = trained
    proc = _defib(root, "predict", "model", "d.csv", "--out", "p.csv", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("defib predict: 80 predictions written to p.csv") and proc.stderr == ""


def test_interrupted_train_says_how_to_resume(tmp_path, tiny_model_dir):
    (tmp_path / "d.csv").write_text(TRAIN_ROWS, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "defib.cli", "train", "d.csv", "--model", str(tiny_model_dir),
                             "--out", "model", "--epochs", "1000", "--eval-every", "2", "--patience", "1000",
                             "--no-progress", "--no-check"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
                            # a child inherits an ignored SIGINT: whatever an earlier test left in this process, the
                            # train gets Python's own Ctrl-C, as from a terminal
                            preexec_fn=functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL))
    parent_sigint = signal.getsignal(signal.SIGINT)
    deadline = time.time() + 240
    while not list((tmp_path / ".model.partial" / "checkpoints").glob("checkpoint-*")) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(1)  # into the next steps
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    # stdout too: a run that ended by itself says so there
    assert proc.returncode == 130, (out[-2000:], err, f"SIGINT in the test process: {parent_sigint}")
    lines = err.strip().splitlines()
    assert lines[-1].startswith("defib: interrupted; to continue from checkpoint-") and "--resume" in lines[-1], err
    assert "Traceback" not in err and not (tmp_path / "model").exists()
