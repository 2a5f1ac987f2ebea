"""defib's series and findings in the experiment tracker the run already logs to, read back from real stores.

TensorBoard event files are read with TensorBoard's own ``EventAccumulator``,
the MLflow file store with ``MlflowClient``, and the W&B offline run from the
records it wrote to disk. Runs are a linear regressor on random data (a step
well under a millisecond), the tiny BERT only where a framework needs one.
"""

from __future__ import annotations

import glob
import os
import struct
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from support import SCRIPTS

import defib

STEPS = 40  # evaluation points at steps 1, 2, 3, 10, 20, 30, 40
EVAL_STEPS = [1, 2, 3, 10, 20, 30, 40]
SERIES = {"defib/pred_std", "defib/target_std", "defib/spread_ratio", "defib/loss", "defib/baseline_loss", "defib/lr"}


def _train(steps: int = STEPS, *, shape_fault: bool = False, log=None, **watch_args) -> defib.watch:
    """A watched linear regression; ``log(step, loss)`` is the script's own tracker call."""
    torch.manual_seed(0)
    x = torch.randn(512, 8)
    y = x @ torch.randn(8) + 0.1 * torch.randn(512)
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with defib.watch(model, opt, announce=None, **watch_args) as w:
        for step in range(1, steps + 1):
            i = torch.randint(0, 512, (32,))
            pred = model(x[i])
            loss = F.mse_loss(pred if shape_fault else pred.squeeze(-1), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if log is not None:
                log(step, loss.item())
    return w


def _at_evaluation_points(steps: list[int]) -> bool:
    """Written at evaluation points only, from the first; the cost bound may skip some between (never a new
    finding's: S001 first fires at the last step)."""
    return steps[0] == 1 and steps[-1] == STEPS and set(steps) <= set(EVAL_STEPS) and steps == sorted(steps)


def _events(logdir) -> tuple[dict[str, list[int]], dict[str, list[tuple[int, str]]]]:
    """TensorBoard's reading of a log folder: scalar tag -> steps, text tag -> (step, text)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    texts = {tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode()) for e in acc.Tensors(tag)]
             for tag in acc.Tags()["tensors"]}
    return scalars, texts


def _tracked(defib_run, tmp_path, *defib_args: str, tracker: str = "tensorboard"):
    script = [sys.executable, str(SCRIPTS / "tiny_tracked.py"), "--tracker", tracker, "--dir", str(tmp_path / "tb"),
              "--fault", "shape", "--steps", str(STEPS)]
    return defib_run(*defib_args, command=script)


# ------------------------------------------------------------------ TensorBoard
def test_a_scripts_summary_writer_gets_defib_series_and_findings(defib_run, tmp_path):
    r = _tracked(defib_run, tmp_path)
    assert r.returncode == 1 and r.report["observed"]["trackers"] == ["tensorboard"], r
    scalars, texts = _events(tmp_path / "tb")
    assert scalars["train/loss"] == list(range(1, STEPS + 1))  # the script's own series, untouched
    assert SERIES <= set(scalars)
    assert _at_evaluation_points(scalars["defib/spread_ratio"])
    first = {f["code"]: f["step"] for f in r.report["findings"]}
    written = {text.split("**")[1]: step for step, text in texts["defib/findings/text_summary"]}
    assert written == {code: first[code] for code in ("L001", "S001")}  # each at the step it first fired
    assert "mse_loss" in dict(texts["defib/findings/text_summary"])[first["L001"]]


def test_log_to_none_writes_nothing_into_the_scripts_writer(defib_run, tmp_path):
    r = _tracked(defib_run, tmp_path, "--log-to", "none")
    assert r.returncode == 1 and "trackers" not in r.report["observed"], r
    scalars, texts = _events(tmp_path / "tb")
    assert set(scalars) == {"train/loss"} and not texts


def test_a_run_without_a_tracker_gets_none_and_imports_none(defib_run, tmp_path):
    r = _tracked(defib_run, tmp_path, tracker="none")
    assert r.returncode == 1 and r.report["observed"]["trackers"] == [], r
    assert "tracker modules: none" in r.stdout  # defib imported no tracker library of its own
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no runs/, mlruns/, wandb/


def _trainer(tiny_model_dir, tmp_path, report_to: str, *, shape_fault: bool = False):
    """20 steps of the tiny BERT under the transformers Trainer with ``report_to=[report_to]`` and defib's callback.

    ``shape_fault``: the loss compares the ``[B, 1]`` logits with the ``[B]`` labels (L001, then a flatline).
    """
    from rules.helpers import sentences
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from defib.integrations.hf import DefibCallback

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = [dict(tok(text, truncation=True, max_length=32), labels=score) for text, score in sentences(320)]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, max_steps=STEPS // 2,
                             learning_rate=1e-3, report_to=[report_to], logging_steps=5, save_strategy="no",
                             disable_tqdm=True, use_cpu=True, seed=0)
    broadcast = (lambda outputs, labels, num_items_in_batch=None: F.mse_loss(outputs.logits, labels.float())) \
        if shape_fault else None
    callback = DefibCallback(report=False)
    Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok),
            callbacks=[callback], compute_loss_func=broadcast).train()
    return callback


def test_the_trainers_tensorboard_run_gets_defib_series(tiny_model_dir, tmp_path):
    _trainer(tiny_model_dir, tmp_path, "tensorboard")
    # the Trainer's TensorBoardCallback built its writer before defib's callback began: found among live objects
    scalars, _ = _events(glob.glob(str(tmp_path / "out" / "runs" / "*"))[0])
    assert "train/loss" in scalars and SERIES <= set(scalars), sorted(scalars)
    assert scalars["defib/lr"][0] == 1


def test_a_tensorboard_that_raises_is_noted_and_the_run_goes_on(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise OSError("disk full")

    writer.add_scalar = broken
    w = _train(log=lambda step, loss: None)
    writer.close()
    assert w.diagnosis.steps == STEPS and w.diagnosis.verdict == "healthy"
    assert len(calls) == 1  # one failure, then defib writes to that writer no more
    internal = next(f for f in w.diagnosis.findings if f.code == "X001")
    assert internal.evidence["errors"] == [internal.evidence["errors"][0]]
    assert internal.evidence["errors"][0].startswith("log_to tensorboard: OSError: disk full")


def test_tracker_logging_costs_under_one_percent_of_the_run(tiny_model_dir, tmp_path):
    from rules.helpers import BertRegressor, sentences
    from torch.utils.tensorboard import SummaryWriter
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = sentences(16 * 60)
    model = BertRegressor(tiny_model_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    writer = SummaryWriter(str(tmp_path / "tb"))
    began = time.perf_counter()
    with defib.watch(model, opt, announce=None) as w:
        for b in range(60):
            batch = rows[16 * b:16 * (b + 1)]
            enc = tok([t for t, _ in batch], padding=True, return_tensors="pt")
            loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), torch.tensor([s for _, s in batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            writer.add_scalar("train/loss", loss.item(), b + 1)
    run = time.perf_counter() - began
    writer.close()
    scalars, _ = _events(tmp_path / "tb")
    assert len(scalars["defib/spread_ratio"]) >= 3  # the bound thins the series out, it does not silence them
    assert w.trackers.seconds < 0.01 * run, (w.trackers.seconds, run)


# ------------------------------------------------------------------ MLflow
@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for an opt-in to the file store
    before = mlflow.get_tracking_uri()
    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # where the Trainer's MLflowCallback looks
    yield uri
    mlflow.set_tracking_uri(before)


def test_the_active_mlflow_run_gets_defib_metrics_and_findings(mlflow_store, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    with mlflow.start_run() as run:
        w = _train(shape_fault=True, log=lambda step, loss: mlflow.log_metric("train/loss", loss, step=step))
    client = MlflowClient()
    run_id = run.info.run_id
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == list(range(1, STEPS + 1))
    assert _at_evaluation_points([m.step for m in client.get_metric_history(run_id, "defib/spread_ratio")])
    assert SERIES <= set(client.get_run(run_id).data.metrics)
    text = open(client.download_artifacts(run_id, "defib/findings.md", str(tmp_path))).read()
    assert f"step {next(f.step for f in w.diagnosis.findings if f.code == 'L001')}: **L001**" in text
    assert len(client.search_runs([run.info.experiment_id])) == 1  # defib started no run of its own


def test_the_trainers_mlflow_run_gets_defib_metrics_and_findings(mlflow_store, tiny_model_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    callback = _trainer(tiny_model_dir, tmp_path, "mlflow", shape_fault=True)
    client = MlflowClient(mlflow_store)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1, runs  # the run the Trainer's MLflowCallback opened, and no run of defib's own
    run_id = runs[0].info.run_id
    metrics = set(client.get_run(run_id).data.metrics)
    assert "loss" in metrics and SERIES <= metrics, sorted(metrics)  # the Trainer's own series beside defib's
    steps = [m.step for m in client.get_metric_history(run_id, "defib/spread_ratio")]
    assert steps and steps[0] == 1 and set(steps) <= set(EVAL_STEPS), steps
    text = open(client.download_artifacts(run_id, "defib/findings.md", str(tmp_path))).read()
    l001 = next(f for f in callback.diagnosis.findings if f.code == "L001")
    assert f"step {l001.step}: **L001**" in text, text


def test_log_to_on_the_watch_picks_one_tracker_of_two(mlflow_store, tmp_path):
    """``log_to="tensorboard"``: the open SummaryWriter gets defib's series, the active MLflow run nothing."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    with mlflow.start_run() as run:
        w = _train(log=lambda step, loss: writer.add_scalar("train/loss", loss, step), log_to="tensorboard")
    writer.close()
    scalars, _ = _events(tmp_path / "tb")
    assert SERIES <= set(scalars) and w.watcher.s.config["trackers"] == ["tensorboard"]
    assert not [k for k in MlflowClient().get_run(run.info.run_id).data.metrics if k.startswith("defib/")]


def _regressor_module():
    import lightning.pytorch as pl

    class Regressor(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(8, 1)

        def training_step(self, batch, _):
            x, y = batch
            loss = F.mse_loss(self.net(x).squeeze(-1), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    return Regressor()


def _fit(logger, callback) -> None:
    import lightning.pytorch as pl

    pl.seed_everything(0, verbose=False)
    x = torch.randn(512, 8)
    data = torch.utils.data.TensorDataset(x, x @ torch.randn(8))
    pl.Trainer(max_steps=STEPS, accelerator="cpu", logger=logger, log_every_n_steps=5, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, callbacks=[callback]).fit(
        _regressor_module(), torch.utils.data.DataLoader(data, batch_size=32, shuffle=True))


def test_lightnings_tensorboard_logger_run_gets_defib_series(tmp_path):
    pytest.importorskip("lightning")
    from lightning.pytorch.loggers import TensorBoardLogger

    from defib.integrations.lightning import DefibCallback

    logger = TensorBoardLogger(str(tmp_path), name="lightning")
    callback = DefibCallback(report=False)
    _fit(logger, callback)
    scalars, _ = _events(logger.log_dir)
    assert "train_loss" in scalars and SERIES <= set(scalars), sorted(scalars)
    steps = scalars["defib/spread_ratio"]
    assert steps[0] == 1 and set(steps) <= set(EVAL_STEPS), steps
    assert callback.diagnosis.verdict == "healthy"


def test_lightnings_mlflow_logger_run_gets_defib_metrics(mlflow_store):
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    from defib.integrations.lightning import DefibCallback

    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=mlflow_store)
    callback = DefibCallback(report=False)
    _fit(logger, callback)
    # Lightning's logger keeps its run off MLflow's active-run stack: the callback hands it over
    history = MlflowClient(mlflow_store).get_metric_history(logger.run_id, "defib/spread_ratio")
    steps = [m.step for m in history]
    assert steps and steps[0] == 1 and set(steps) <= set(EVAL_STEPS), steps
    assert callback.diagnosis.verdict == "healthy"


# ------------------------------------------------------------------ Weights & Biases
def _wandb_history(run_dir) -> list[dict[str, str]]:
    """The history rows of an offline W&B run, from its ``.wandb`` file (a LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(glob.glob(os.path.join(run_dir, "*.wandb"))[0], "rb").read()
    block, pos, pending, rows = 32768, 7, b"", []  # the file's own header is 7 bytes
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a record header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
    return rows


def _wandb_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
                       "WANDB_CONSOLE": "off", "WANDB_PROJECT": "defib-test"}.items():
        monkeypatch.setenv(key, value)
    # wandb keeps its settings (the run folder among them) from the first setup in a process: start afresh so
    # this test's WANDB_DIR applies when an earlier test already ran wandb
    wandb.teardown()
    return wandb


def test_an_offline_wandb_run_gets_defib_series_on_its_own_step_axis(tmp_path, monkeypatch):
    wandb = _wandb_offline(tmp_path, monkeypatch)
    try:
        run = wandb.init(project="defib-test", dir=str(tmp_path))
    except Exception as exc:  # wandb's service process cannot start here
        pytest.skip(f"wandb cannot run offline here: {type(exc).__name__}: {exc}")
    run_dir = os.path.dirname(run.dir)
    try:
        _train(shape_fault=True, log=lambda step, loss: run.log({"train/loss": loss}))
    finally:
        run.finish()
    for _ in range(100):  # wandb's service process may still be writing the file when finish() returns
        rows = _wandb_history(run_dir)
        if len(rows) >= STEPS:
            break
        time.sleep(0.1)
    assert [int(r["_step"]) for r in rows] == list(range(STEPS))  # defib added no rows to the script's steps
    ours = [r for r in rows if "defib/step" in r]
    assert _at_evaluation_points([int(r["defib/step"]) for r in ours]) and SERIES <= set(ours[0])
    findings = "".join(r.get("defib/findings", "") for r in ours)
    assert "**L001**" in findings and "**S001**" in findings


def test_the_trainers_wandb_run_gets_defib_series_and_findings(tiny_model_dir, tmp_path, monkeypatch):
    wandb = _wandb_offline(tmp_path, monkeypatch)
    try:
        callback = _trainer(tiny_model_dir, tmp_path, "wandb", shape_fault=True)
    except Exception as exc:  # wandb's service process cannot start here
        pytest.skip(f"wandb cannot run offline here: {type(exc).__name__}: {exc}")
    run = wandb.run
    assert run is not None  # the run the Trainer's WandbCallback started (it leaves finishing it to the script)
    run_dir = os.path.dirname(run.dir)
    run.finish()
    for _ in range(100):  # wandb's service process may still be writing the file when finish() returns
        rows = _wandb_history(run_dir)
        if any("defib/step" in r for r in rows) and any("train/loss" in r for r in rows):
            break
        time.sleep(0.1)
    assert len(glob.glob(str(tmp_path / "wandb" / "offline-run-*"))) == 1  # defib started no run of its own
    assert any("train/loss" in r for r in rows), rows  # the Trainer's own rows
    ours = [r for r in rows if "defib/step" in r]
    assert ours and SERIES <= set().union(*ours), ours
    steps = [int(r["defib/step"]) for r in ours]
    assert steps == sorted(steps) and set(steps) <= set(EVAL_STEPS), steps
    findings = "".join(r.get("defib/findings", "") for r in ours)
    assert "**L001**" in findings, findings
    assert any(f.code == "L001" for f in callback.diagnosis.findings)
