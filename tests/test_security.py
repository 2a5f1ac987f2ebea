"""What defib loads and writes: safetensors only, the sample wheels by their pinned sha256, files by the umask.

- A model folder with only ``pytorch_model.bin`` (a pickle: loading it can run
  code) is refused by probe, train and predict with one line that says why,
  and the confirmation's pretrained-weights fix leaves it unloaded.
- A cached sample wheel whose sha256 is not the pinned one is refused.
- Reports and predictions get the mode ``open`` would give (0666 less the
  umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from defib.demos import data as demo_data
from defib.evidence import weights
from support import run_defib


@pytest.fixture(scope="module")
def pickled_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A sequence classifier whose only weights are a ``pytorch_model.bin`` (transformers 5 writes none itself)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    out = tmp_path_factory.mktemp("pickled")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    model.save_pretrained(out)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    (out / "model.safetensors").unlink()
    for name in os.listdir(tiny_model_dir):
        if name.startswith(("tokenizer", "vocab", "special_tokens")):
            shutil.copy(tiny_model_dir / name, out / name)
    return out


def _one_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res
    return lines[0]


def test_refusal_names_the_pickle(pickled_model_dir, tiny_model_dir):
    assert weights.refusal(tiny_model_dir) is None
    assert "only pickled weights (pytorch_model.bin)" in weights.refusal(pickled_model_dir)


def _rows(tmp_path: Path) -> Path:
    data = tmp_path / "rows.csv"
    data.write_text("text,label\n" + "".join(f"sentence number {i},{i % 2}\n" for i in range(40)), encoding="utf-8")
    return data


def test_probe_refuses_pickled_weights(tmp_path, pickled_model_dir):
    line = _one_line(run_defib(tmp_path, "probe", "--model", str(pickled_model_dir), "--data", str(_rows(tmp_path))))
    assert "safetensors only" in line and "pytorch_model.bin" in line


def test_train_refuses_pickled_weights(tmp_path, pickled_model_dir):
    out = tmp_path / "model"
    line = _one_line(run_defib(tmp_path, "train", str(_rows(tmp_path)), "--text", "text", "--label", "label",
                               "--model", str(pickled_model_dir), "--out", str(out)))
    assert "safetensors only" in line and not out.exists()


def test_predict_refuses_pickled_weights(tmp_path, pickled_model_dir):
    line = _one_line(run_defib(tmp_path, "predict", str(pickled_model_dir), str(_rows(tmp_path)),
                               "--out", str(tmp_path / "p.csv")))
    assert "safetensors only" in line and not (tmp_path / "p.csv").exists()


class _Watcher:
    """The one thing the fix asks of the watcher: the models it watches."""

    def __init__(self, *models):
        self.models = models

    def roots(self):
        return self.models


def _fresh_classifier(config_path: Path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(config_path)
    return AutoModelForSequenceClassification.from_config(config)


@pytest.mark.parametrize("kind", ["safetensors", "pickle"])
def test_pretrained_fix_loads_safetensors_only(kind, capsys, tiny_model_dir, pickled_model_dir):
    from defib.fixes.model.not_pretrained import LoadPretrained

    folder = tiny_model_dir if kind == "safetensors" else pickled_model_dir
    model = _fresh_classifier(folder)  # from_config: random encoder weights, _name_or_path the folder
    model.config._name_or_path = str(folder)
    before = model.bert.embeddings.word_embeddings.weight.detach().clone()
    LoadPretrained({}).before_step(None, _Watcher(model))
    changed = not model.bert.embeddings.word_embeddings.weight.detach().equal(before)
    if kind == "safetensors":
        assert changed
    else:
        assert not changed and "safetensors only" in capsys.readouterr().err


def test_tampered_sample_wheel_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFIB_CACHE", str(tmp_path))
    wheels = demo_data.cache_dir()
    name, version = demo_data.STSB_WHEEL
    (wheels / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(demo_data.SampleDataError, match="sha256 .* is not the pinned"):
        demo_data.load_stsb("train")


def test_probe_with_a_tampered_sample_wheel_is_one_line(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("DEFIB_CACHE", str(tmp_path / "cache"))
    wheels = demo_data.cache_dir()
    name, version = demo_data.STSB_WHEEL
    (wheels / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"not the wheel")
    line = _one_line(run_defib(tmp_path, "probe", "--model", str(tiny_model_dir)))
    assert "is not the pinned" in line and "--data" in line


def test_the_cached_sample_wheels_match_their_pins():
    for (name, version), digest in demo_data.WHEEL_SHA256.items():
        found = sorted((Path.home() / ".cache" / "defib" / "wheels").glob(f"{name.replace('-', '_')}-{version}-*"))
        if not found:
            pytest.skip(f"{name} {version} not in the cache (no index here to fetch it)")
        assert hashlib.sha256(found[0].read_bytes()).hexdigest() == digest, found[0]
        demo_data._verify(found[0], digest)  # and defib's own check agrees: it raises on a mismatch


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_reports_and_predictions_follow_the_umask(tmp_path, mask, mode):
    import numpy as np

    from defib.report import json as json_report
    from defib.train.labels import LabelSpace
    from defib.train.predict import write_csv

    old = os.umask(mask)
    try:
        json_report.write({"verdict": "healthy", "findings": []}, tmp_path / "r.json")
        write_csv(tmp_path / "p.csv", LabelSpace("regression"), [0.5], np.zeros((1, 1), dtype=np.float32))
    finally:
        os.umask(old)
    for name in ("r.json", "p.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == "healthy"


def test_cli_report_follows_the_umask(tmp_path, tiny_model_dir):
    """A report written by a command (a subprocess started under umask 022) is 0644."""
    import subprocess

    out = tmp_path / "probe.json"
    code = (f"import os, sys; os.umask(0o022); sys.argv = ['defib', 'probe', '--model', {str(tiny_model_dir)!r}, "
            f"'--data', {str(_rows(tmp_path))!r}, '--rows', '8', '--quiet', '--json', {str(out)!r}]; "
            "from defib.cli import app; app()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode in (0, 1), proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
