"""Encoders other than BERT: RoBERTa, XLM-R, DistilBERT, ELECTRA, DeBERTa-v2 and ModernBERT, through AutoModel*.

Each family is a tiny random checkpoint with a tokenizer of its own kind
(tests/encoders.py): pad ids 1 (RoBERTa, XLM-R) and 603 (ModernBERT) next to
0, ``<s>``/``</s>`` or ``[CLS]``/``[SEP]`` at their own ids, token type ids or
none. For each: a healthy watched loop stays healthy (no false alarm from a
BERT assumption); a dropped attention mask is named with the family's pad id;
a frozen head is named by the family's own head names; ``defib check`` and
``defib probe`` run on a folder of it; its parameters group as embeddings,
layer.N and head.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from encoders import FAMILIES, WITHOUT_TYPE_IDS, build_checkpoint
from rules.helpers import assert_where, find, sentences, watch
from support import assert_healthy, run_defib, tiny_script
from typer.testing import CliRunner

from defib.cli import app
from defib.evidence import params as P

ROWS = sentences(96, seed=5)
BATCH = 16
# the modules each family's AutoModelForSequenceClassification adds on top of its encoder
DENSE_OUT = ["classifier.dense", "classifier.out_proj"]
HEADS = {"roberta": DENSE_OUT, "xlm-roberta": DENSE_OUT, "electra": DENSE_OUT,
         "distilbert": ["pre_classifier", "classifier"], "deberta-v2": ["classifier"],
         "modernbert": ["head.dense", "head.norm", "classifier"]}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    cache: dict = {}
    return {f: build_checkpoint(f, root / f, cache) for f in FAMILIES}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _tok(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _classifier(folder: Path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1).train()


def _batches(tok):
    for i in range(0, len(ROWS), BATCH):
        enc = tok([t for t, _ in ROWS[i:i + BATCH]], padding=True, truncation=True, max_length=32, return_tensors="pt")
        yield enc, torch.tensor([y for _, y in ROWS[i:i + BATCH]])


class Regressor(torch.nn.Module):
    """AutoModel and a linear head on the first token (``<s>`` or ``[CLS]``) of ``last_hidden_state``."""

    def __init__(self, folder: Path):
        super().__init__()
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(folder)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        return self.head(h[:, 0]).squeeze(-1)


@pytest.mark.parametrize("family", FAMILIES)
def test_healthy_loop_is_healthy(family, checkpoints):
    tok = _tok(checkpoints[family])
    assert ("token_type_ids" in tok("a b")) == (family not in WITHOUT_TYPE_IDS)
    with watch() as w:
        model = _classifier(checkpoints[family])
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(2):
            for enc, y in _batches(tok):
                loss = F.mse_loss(model(**enc).logits.squeeze(-1), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
    assert_healthy(w.diagnosis, steps=2 * len(ROWS) // BATCH)
    d = w.watcher.s.data
    assert d.pad_token_id == tok.pad_token_id and d.batches_with_pad > 0  # the family's pad id, seen padding
    m = w.watcher.s.model
    assert m.layernorm_at_init == 0.0 and len(m.cls_spread) > 0 and len(m.token_spread) > 0  # last_hidden_state read


@pytest.mark.parametrize("family", FAMILIES)
def test_dropped_mask_is_named_with_the_family_pad_id(family, checkpoints):
    tok = _tok(checkpoints[family])
    with watch() as w:
        model = Regressor(checkpoints[family]).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for enc, y in _batches(tok):
            pred = model(enc["input_ids"])  # planted
            loss = F.mse_loss(pred, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "D002")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "data.attention_mask" and f.evidence["pad_token_id"] == tok.pad_token_id
    assert f.evidence["no_mask"] == f.evidence["padded_batches"] > 0
    assert_where(f, test_dropped_mask_is_named_with_the_family_pad_id)


@pytest.mark.parametrize("family", FAMILIES)
def test_frozen_head_is_named_by_the_family_head(family, checkpoints):
    tok = _tok(checkpoints[family])
    with watch() as w:
        model = _classifier(checkpoints[family])
        model.requires_grad_(False)  # planted
        model.base_model.requires_grad_(True)  # "train the encoder", and the head forgotten
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for enc, y in _batches(tok):
            loss = F.mse_loss(model(**enc).logits.squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "O004")
    assert f is not None, w.diagnosis.findings
    assert w.diagnosis.findings[0].cause == "optim.frozen", [(g.code, g.message) for g in w.diagnosis.findings]
    assert {n.rsplit(".", 1)[0] for n in f.evidence["head_frozen"]} <= set(HEADS[family])
    assert_where(f, test_frozen_head_is_named_by_the_family_head)


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_groups(family, checkpoints):
    model = _classifier(checkpoints[family])
    groups = {P.group_of(n) for n, _ in model.named_parameters()}
    assert {"embeddings", "layer.0", "layer.1", "head"} <= groups, groups
    assert groups <= {"embeddings", "layer.0", "layer.1", "encoder", "pooler", "head"}, groups
    head = {n.rsplit(".", 1)[0] for n, _ in model.named_parameters() if P.group_of(n) == "head"}
    assert head == set(HEADS[family])
    base = {id(p) for p in model.base_model.parameters()}
    assert all(P.group_of(n) != "head" for n, p in model.named_parameters() if id(p) in base)
    # every LayerNorm of the encoder is read by the never-pretrained check, and none is at its default init
    norms = [m for m in model.base_model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(P.encoder_layernorms(model)) == len(norms) > 0
    assert not any(P.at_default_init(ln) for ln in norms)
    fresh = type(model)(model.config)  # never pretrained: every one of them at its default init
    assert all(P.at_default_init(ln) for ln in P.encoder_layernorms(fresh))


def _csv(path: Path) -> Path:
    lines = ["text,label"] + [f"{t},{y + 0.5}" for t, y in sentences(64, seed=6)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cli(*args: str):
    """A defib command in-process; it must end with exit 0 or 1 (a verdict), not an error or a crash."""
    res = CliRunner().invoke(app, [*args], env={"COLUMNS": "200", "HF_HUB_OFFLINE": "1"})
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code in (0, 1), res.output
    return res


@pytest.mark.parametrize("family", FAMILIES)
def test_check_and_probe_on_a_folder(family, checkpoints, tmp_path):
    folder, data = checkpoints[family], _csv(tmp_path / "rows.csv")
    _cli("check", str(data), "--model", str(folder), "--json", str(tmp_path / "check.json"), "--quiet")
    report = json.loads((tmp_path / "check.json").read_text())
    codes = [f["code"] for f in report["findings"]]
    assert "D102" not in codes, report["findings"]  # the family's own specials are found where it puts them
    assert report["check"]["rows"] == 64
    _cli("probe", "--model", str(folder), "--data", str(data), "--rows", "32", "--json", str(tmp_path / "probe.json"),
         "--quiet", "--no-progress")
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["task"] == "regression" and probe["probe"]["errors"] == {}
    assert not [f for f in probe["findings"] if f["severity"] == "error"], probe["findings"]
    assert {"embeddings", "layer.0", "layer.1", "head"} <= set(probe["probe"]["grad_norms"])
    sens = probe["probe"]["sensitivity"]
    assert sens["padded_rows"] > 0 and sens["mask_effect"] > 0  # padding masked with the family's own pad id


def test_positions_after_the_pad_id_are_not_usable(checkpoints):
    from defib.evidence.preflight.tokens import load_model_config, pick_max_length
    from defib.evidence.readers import InputError

    for family in ("roberta", "xlm-roberta"):  # 66 position embeddings, positions start after pad id 1
        cfg = load_model_config(checkpoints[family])
        assert cfg.max_positions == 64
        with pytest.raises(InputError, match="64 positions"):
            pick_max_length(_tok(checkpoints[family]), cfg, 65)
    assert load_model_config(checkpoints["electra"]).max_positions == 64  # absolute positions from 0


def test_token_type_ids_reach_only_models_with_two_types(checkpoints):
    """A pair tokenizer that marks the second text as type 1 (ELECTRA's) next to RoBERTa's single type."""
    from defib.evidence.probes import run_probes
    from defib.evidence.params import input_keys

    roberta = _classifier(checkpoints["roberta"])
    assert input_keys(roberta.config) == ("input_ids", "attention_mask")
    assert "token_type_ids" in input_keys(_classifier(checkpoints["electra"]).config)
    pairs = [(t, t.split()[0]) for t, _ in ROWS[:16]]
    sig = run_probes(roberta, _tok(checkpoints["electra"]), pairs, labels=[y for _, y in ROWS[:16]],
                     task="regression", only=("initial", "sensitivity"))
    assert sig.errors == {} and sig.sensitivity.padded_rows > 0


@pytest.mark.parametrize("family", ["roberta", "modernbert"])
def test_train_and_predict_from_a_folder(family, checkpoints, tmp_path):
    rows = sentences(200, seed=7)
    data = tmp_path / "train.csv"
    data.write_text("\n".join(["text,score"] + [f"{t},{y + 0.5}" for t, y in rows]) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    _cli("train", str(data), "--text", "text", "--label", "score", "--model", str(checkpoints[family]),
         "--out", str(out), "--epochs", "1", "--lr", "3e-3", "--no-progress")
    assert json.loads((out / "config.json").read_text())["pad_token_id"] == _tok(checkpoints[family]).pad_token_id
    assert json.loads((out / "defib_report.json").read_text())["verdict"] != "flatlined"
    _cli("predict", str(out), str(data), "--out", str(tmp_path / "preds.csv"))
    assert len((tmp_path / "preds.csv").read_text().splitlines()) == len(rows) + 1


@pytest.mark.parametrize("family", ["roberta", "modernbert"])
def test_defib_run_of_a_script_is_healthy(family, checkpoints, tmp_path):
    """``defib run`` (the boot path, the tokenizer and from_pretrained patches) on a script's AutoModel + head."""
    r = run_defib(tmp_path, command=tiny_script(checkpoints[family], "--steps", "40"))
    rep = r.report
    assert rep is not None and rep["steps_observed"] == 40 and rep["script_exit"] == 0, r
    alarms = [(f["code"], f["message"]) for f in rep["findings"] if f["severity"] != "info"]
    assert not alarms and rep["verdict"] == "healthy", alarms
