"""``defib train``: fine-tune a BERT-family encoder for regression, classification or tagging, the way that does not flatline.

The order of work, and why:

1. check everything that can be wrong with the input before any weight is
   loaded (files, columns, labels for the task, the model folder, the output
   folder), so bad input costs a second and leaves nothing behind;
2. run ``defib check`` on the training data when it is available and stop on
   an error finding (``--ignore-check``: go on anyway);
3. tokenize once without padding; the collator pads each batch to its own
   longest row (dynamic padding) and the sampler groups rows of similar
   length into batches, reshuffled every epoch;
4. train with the transformers ``Trainer`` (accelerate, mixed precision and
   multi-GPU come from there), defib watching through its callback (``--task
   similarity``: sentence-transformers' subclass of it, :mod:`defib.train.similarity`);
5. write everything into a hidden work folder beside ``--out`` and move the
   model into place only at the end: an interrupted run leaves ``--out``
   untouched (and ``--resume`` continues from the work folder's checkpoint).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from defib.evidence.params import input_keys
from defib.evidence.preflight.tokens import load_model_config, load_tokenizer, pick_max_length
from defib.evidence.readers import InputError
from defib.signals.run import TOKEN_TASK
from defib.report.paths import unwritable
from defib.train import labels as L
from defib.train import metrics as M
from defib.train.data import Columns, read_columns
from defib.train.losses import FAMILY, IGNORE, LOSSES, Loss, default_loss
from defib.train.model import resolve_model
from defib.train.tokens import align, encode_words

SCHEDULERS = {"linear": "linear", "cosine": "cosine", "plateau": "reduce_lr_on_plateau"}
META_FILE = "defib_train.json"      # beside the safetensors: the label space, options and dev metrics
REPORT_FILE = "defib_report.json"   # the diagnosis of the training run (the JSON contract)


@dataclass
class TrainOptions:
    """Everything ``defib train`` takes; the defaults are the recipe (see the CLI help for each)."""

    data: Path
    text: str
    label: str
    model: str
    out: Path
    text_pair: str | None = None
    task: str | None = None
    dev: Path | None = None
    dev_share: float = 0.1        # held out of DATA when no --dev is given
    epochs: float = 4.0
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int | None = None  # None: the tokenizer's, capped by the positions (as defib check picks it)
    loss: str | None = None       # None: by the task and the class balance
    class_weights: str = "balanced"  # how weighted-ce / focal weight the classes (labels.WEIGHTINGS)
    scheduler: str = "linear"
    warmup: float = 0.1           # share of the optimizer steps spent warming up
    weight_decay: float = 0.01
    clip: float = 1.0
    accumulation: int = 1
    patience: int = 2             # evaluations without a better dev metric before stopping
    eval_every: int = 0           # optimizer steps between evaluations (0: once per epoch)
    max_steps: int = 0            # stop after this many optimizer steps (0: the epochs decide)
    ignore: tuple[str, ...] = ()  # rule codes left out of the data check's and the watch's diagnoses
    seed: int = 42
    resume: bool = False
    overwrite: bool = False
    check: bool = True
    ignore_check: bool = False
    progress: bool = True


@dataclass
class TrainResult:
    out: Path
    task: str
    loss: str
    metrics: dict[str, float]
    wall_s: float
    train_s: float
    samples_per_s: float
    epochs_run: float
    best_step: int | None
    diagnosis: Any = None
    notes: list[str] = field(default_factory=list)


class CheckFailed(Exception):
    """``defib check`` found an error in the training data (its diagnosis is attached)."""

    def __init__(self, diagnosis: Any):
        super().__init__("defib check found an error in the training data")
        self.diagnosis = diagnosis


# ---------------------------------------------------------------- input
@dataclass
class Prepared:
    train: Columns
    dev: Columns
    space: L.LabelSpace
    y_train: np.ndarray | list[np.ndarray]     # token classification: tag ids per word, row by row
    y_dev: np.ndarray | list[np.ndarray]
    model: str
    loss: str
    weights: np.ndarray | None
    notes: list[str]


def prepare(opts: TrainOptions) -> Prepared:
    """Read and validate every input; raise :class:`InputError` (one line) on the first problem."""
    _check_options(opts)
    _check_out(opts)
    if opts.task == L.SIMILARITY:
        from defib.train.similarity import require

        require(opts)
    model = resolve_model(opts.model)
    tagged = opts.task == TOKEN_TASK  # a .txt / .tsv without a header is then a CoNLL file
    train = read_columns(opts.data, opts.text, opts.text_pair, opts.label, sniff_conll=tagged)
    space = L.build(train, opts.label, opts.task)  # every label checked, with its row in the file
    notes: list[str] = []
    if opts.dev is not None:
        dev = read_columns(opts.dev, opts.text, opts.text_pair, opts.label, sniff_conll=space.task == TOKEN_TASK)
        L.implied_task(dev, opts.label, space.task)  # its labels checked as the training file's are
    else:
        train, dev = _split(train, opts.dev_share, opts.seed)
        notes.append(f"dev set: {len(dev)} rows held out of {opts.data.name} ({opts.dev_share:.0%}, seed {opts.seed})")
        if space.task in L.SCORED:
            space = L.build(train, opts.label, space.task)  # the target scale of the rows trained on
    y_train, y_dev = space.encode(train, opts.label), space.encode(dev, opts.label)
    counts = space.class_counts(y_train)
    classes = space.task in ("classification", TOKEN_TASK)
    weights = L.class_weights(counts, how=opts.class_weights) if classes else None
    loss = opts.loss or default_loss(space.task, weights is not None)
    family = "classification" if space.task == TOKEN_TASK else space.task  # tags take the class losses
    if FAMILY[loss] != family:
        raise InputError(f"--loss {loss} is for {FAMILY[loss]}, but the labels make this {space.task}"
                         + ("" if opts.task else f" (inferred; pass --task {FAMILY[loss]} if that is meant)"))
    if loss in ("weighted-ce", "focal") and weights is None and classes:
        weights = L.class_weights(counts, always=True, how=opts.class_weights)
    if loss not in ("weighted-ce", "focal"):
        weights = None  # asked for plain cross-entropy: nothing is weighted
    if space.task == "regression":
        notes.append(f"targets standardised for training: (y - {space.target_mean:.4g}) / {space.target_std:.4g}; "
                     "predictions are mapped back")
    elif space.task == L.SIMILARITY:
        notes.append(f"scores scaled from their range [{space.target_mean:g}, {space.target_mean + space.target_std:g}] "
                     f"onto [0, 1]; {loss} loss on the cosine of the two texts' embeddings, which predict gives")
    elif space.task == TOKEN_TASK:
        order = np.argsort(-counts, kind="stable")
        shares = ", ".join(f"{space.names[i]} {counts[i] / counts.sum():.1%}" for i in order[:6])
        more = f" and {len(order) - 6} more" if len(order) > 6 else ""
        notes.append(f"tags over {int(counts.sum())} words: {shares}{more}; each word's tag on its first word piece "
                     f"(the others -100), {loss} loss" + (f" with class weights ({opts.class_weights})"
                                                          if weights is not None else ""))
    elif space.task == "classification":
        shares = ", ".join(f"{n} {c / counts.sum():.0%}" for n, c in zip(space.names, counts))
        if loss == "weighted-ce":
            notes.append(f"classes {shares}: --loss weighted-ce, so cross-entropy weighted ({opts.class_weights}) "
                         + ", ".join(f"{n} {w:.2f}" for n, w in zip(space.names, weights)))
        elif loss == "focal":
            why = "imbalanced, so " if opts.loss is None else ""
            notes.append(f"classes {shares}: {why}focal loss (gamma 2) with class weights ({opts.class_weights}) "
                         + ", ".join(f"{n} {w:.2f}" for n, w in zip(space.names, weights)))
        else:
            notes.append(f"classes {shares}: plain cross-entropy")
    opts.max_length, source = pick_max_length(load_tokenizer(model), load_model_config(model), opts.max_length)
    if source != "--max-length":
        notes.append(f"max_length {opts.max_length} ({source}; --max-length to choose)")
    return Prepared(train, dev, space, y_train, y_dev, model, loss, weights, notes)


def _check_options(opts: TrainOptions) -> None:
    if opts.task is not None and opts.task not in L.TRAIN_TASKS:
        raise InputError(f"--task {opts.task}: use one of {', '.join(L.TRAIN_TASKS)}")
    if opts.loss is not None and opts.loss not in LOSSES:
        raise InputError(f"--loss {opts.loss}: use one of {', '.join(LOSSES)}")
    if opts.class_weights not in L.WEIGHTINGS:
        raise InputError(f"--class-weights {opts.class_weights}: use one of {', '.join(L.WEIGHTINGS)}")
    if opts.scheduler not in SCHEDULERS:
        raise InputError(f"--scheduler {opts.scheduler}: use one of {', '.join(SCHEDULERS)}")
    if not 0 < opts.dev_share < 1:
        raise InputError(f"--dev-share {opts.dev_share}: must be between 0 and 1")


def work_dir(out: Path) -> Path:
    """The hidden folder beside ``out`` where a run writes until it is done."""
    return out.parent / f".{out.name}.partial"


def _check_out(opts: TrainOptions) -> None:
    out = opts.out
    if out.exists() and not opts.overwrite:
        raise InputError(f"--out {out}: already exists (pass --overwrite to replace it at the end of training)")
    why = unwritable(out, folder=True)
    if why:
        raise InputError(f"--out {out}: cannot write the model there: {why}")
    if opts.resume and not _last_checkpoint(work_dir(out)):
        raise InputError(f"--resume: no checkpoint to resume in {work_dir(out)}")


def _split(col: Columns, share: float, seed: int) -> tuple[Columns, Columns]:
    n = len(col)
    n_dev = max(1, int(round(n * share)))
    if n - n_dev < 2:
        raise InputError(f"{col.path}: {n} rows are too few to hold out a dev set; pass --dev")
    order = np.random.default_rng(seed).permutation(n)
    parts = []
    for idx in (order[n_dev:], order[:n_dev]):
        take = sorted(idx.tolist())
        parts.append(Columns(col.path, [col.texts[i] for i in take],
                             [col.pairs[i] for i in take] if col.pairs is not None else None,
                             [col.labels[i] for i in take] if col.labels is not None else None))
    return parts[0], parts[1]


def resume_hint(opts: TrainOptions) -> str:
    """What an interrupted run can do next: continue from its last checkpoint, or start again."""
    last = _last_checkpoint(work_dir(opts.out))
    if last is None:
        when = f"every {opts.eval_every} steps" if opts.eval_every else "at the end of each epoch"
        return f"no checkpoint saved yet (one is saved {when}): the same command starts again"
    return f"to continue from {last.name}, run the same command with --resume"


def _last_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("checkpoints/checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
    return found[-1] if found else None


# ---------------------------------------------------------------- data check
def check_training_data(opts: TrainOptions, prep: Prepared) -> Any:
    """``defib.check_data`` on the training rows, when this defib has it (None otherwise)."""
    import defib

    check = getattr(defib, "check_data", None)
    if check is None or not opts.check:
        return None
    task = "regression" if prep.space.task == L.SIMILARITY else prep.space.task  # a score per pair, to the check
    diagnosis = check(prep.train.texts, prep.train.labels, text_pairs=prep.train.pairs, model=prep.model,
                      max_length=opts.max_length, task=task, ignore=opts.ignore)
    if diagnosis.exit_code() and not opts.ignore_check:
        raise CheckFailed(diagnosis)
    return diagnosis


# ---------------------------------------------------------------- training
class _Encoded:
    """Tokenized rows (no padding) with their targets, as the Trainer's dataset."""

    def __init__(self, enc: dict[str, list], targets: np.ndarray | list[list[int]]):
        self.enc, self.targets = enc, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = {k: v[i] for k, v in self.enc.items()}
        t = self.targets[i]
        row["labels"] = t if isinstance(t, list) else t.tolist() if t.ndim else t.item()  # tokens: a label per position
        return row


def encode(tokenizer: Any, col: Columns, max_length: int, keys: tuple[str, ...]) -> dict[str, list]:
    """The tokenizer's outputs named in ``keys`` (:func:`defib.evidence.params.input_keys` of the model)."""
    enc = tokenizer(col.texts, col.pairs, truncation=True, max_length=max_length)
    return {k: v for k, v in enc.items() if k in keys}


def _dataset(tokenizer: Any, col: Columns, targets: Any, max_length: int, keys: tuple[str, ...]) -> _Encoded:
    """The Trainer's dataset; for tags, each word's tag id at its first word piece and -100 elsewhere."""
    if not col.per_token:
        return _Encoded(encode(tokenizer, col, max_length, keys), targets)
    enc = encode_words(tokenizer, col.texts, max_length)
    return _Encoded({k: v for k, v in enc.items() if k in keys}, align(enc, targets))


def train(opts: TrainOptions, prep: Prepared) -> TrainResult:
    """Fine-tune and write the model to ``opts.out`` (see the module docstring for the order of work)."""
    with quiet_transformers():  # defib prints its own plan, diagnosis and table
        if prep.space.task == L.SIMILARITY:
            from defib.train.similarity import train_bi_encoder

            return train_bi_encoder(opts, prep)
        return _train(opts, prep)


def _train(opts: TrainOptions, prep: Prepared) -> TrainResult:
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
                              DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer)

    started = time.time()
    space = prep.space
    tok = AutoTokenizer.from_pretrained(prep.model)
    config: dict[str, Any] = {"num_labels": space.num_outputs}
    tagging = space.task == TOKEN_TASK
    if space.task == "regression":
        config["problem_type"] = "regression"
    else:
        if not tagging:
            config["problem_type"] = ("single_label_classification" if space.task == "classification"
                                      else "multi_label_classification")
        config["id2label"] = dict(enumerate(space.names))
        config["label2id"] = {n: i for i, n in enumerate(space.names)}
    torch.manual_seed(opts.seed)  # the new head's initialisation
    auto = AutoModelForTokenClassification if tagging else AutoModelForSequenceClassification
    model = auto.from_pretrained(prep.model, use_safetensors=True, **config)
    keys = input_keys(model.config)
    train_ds = _dataset(tok, prep.train, prep.y_train, opts.max_length, keys)
    dev_ds = _dataset(tok, prep.dev, prep.y_dev, opts.max_length, keys)
    args, steps_per_epoch = recipe_args(opts, len(train_ds), M.SELECT[space.task])
    weights = torch.tensor(prep.weights) if prep.weights is not None else None
    callbacks = watched_callbacks(opts)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds,
                      data_collator=DataCollatorForTokenClassification(tok) if tagging else DataCollatorWithPadding(tok),
                      processing_class=tok, compute_loss_func=Loss(prep.loss, weights), compute_metrics=_metrics_fn(space),
                      # tags: keep each position's argmax, not (rows, positions, tags) logits for the whole dev set
                      preprocess_logits_for_metrics=_argmax if tagging else None, callbacks=callbacks)
    return run_trainer(trainer, callbacks[0], opts, prep, steps_per_epoch, started, lambda final: final)


def recipe_args(opts: TrainOptions, rows: int, select: str, cls: Any = None, grouped: bool = True) -> tuple[Any, int]:
    """The recipe's ``TrainingArguments`` (or the subclass ``cls``), and the optimizer steps per epoch.

    ``select``: the dev metric early stopping and the best checkpoint follow.
    ``grouped``: batches of rows of similar length, reshuffled every epoch
    (the Trainer's ``group_by_length``). Also clears an interrupted run's work folder unless
    resuming.
    """
    import torch
    from transformers import TrainingArguments

    work = work_dir(opts.out)
    steps_per_epoch = math.ceil(rows / (opts.batch_size * opts.accumulation * _world_size()))
    total_steps = max(1, math.ceil(steps_per_epoch * opts.epochs))
    if opts.max_steps:  # at most: a --max-steps beyond the epochs' steps changes nothing
        total_steps = min(total_steps, opts.max_steps)
    every = {"eval_strategy": "steps", "eval_steps": opts.eval_every, "save_strategy": "steps",
             "save_steps": opts.eval_every} if opts.eval_every else {"eval_strategy": "epoch", "save_strategy": "epoch"}
    args = (cls or TrainingArguments)(
        output_dir=str(work / "checkpoints"), num_train_epochs=opts.epochs, max_steps=total_steps if opts.max_steps else -1,
        learning_rate=opts.lr,
        per_device_train_batch_size=opts.batch_size, per_device_eval_batch_size=opts.batch_size * 2,
        gradient_accumulation_steps=opts.accumulation, weight_decay=opts.weight_decay, max_grad_norm=opts.clip,
        warmup_steps=0 if opts.scheduler == "plateau" else int(opts.warmup * total_steps),
        lr_scheduler_type=SCHEDULERS[opts.scheduler], optim="adamw_torch",
        **({"train_sampling_strategy": "group_by_length"} if grouped else {}), **every,
        load_best_model_at_end=True, metric_for_best_model=select, greater_is_better=True, save_total_limit=2,
        logging_strategy="epoch" if not opts.eval_every else "steps", logging_steps=opts.eval_every or 500,
        report_to=[], seed=opts.seed, data_seed=opts.seed, disable_tqdm=not opts.progress,
        dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(), ddp_find_unused_parameters=False)  # without it, accelerate runs torchrun ranks on CPU as N separate runs
    with args.main_process_first():  # under torchrun: rank 0 clears the folder before the others use it
        if args.process_index == 0 and not opts.resume and work.exists():
            shutil.rmtree(work)  # the leftovers of an interrupted run (ours: never the user's --out)
        work.mkdir(parents=True, exist_ok=True)
    return args, steps_per_epoch


def watched_callbacks(opts: TrainOptions) -> list[Any]:
    """defib's callback (first: :func:`run_trainer` takes its diagnosis) and early stopping."""
    from transformers import EarlyStoppingCallback

    from defib.integrations.hf import DefibCallback

    return [DefibCallback(json_path=work_dir(opts.out) / "model" / REPORT_FILE, report=False, ignore=opts.ignore),
            EarlyStoppingCallback(early_stopping_patience=opts.patience)]


def run_trainer(trainer: Any, callback: Any, opts: TrainOptions, prep: Prepared, steps_per_epoch: int, started: float,
                metrics_of: Callable[[dict[str, float]], dict[str, float]]) -> TrainResult:
    """Train, evaluate the best checkpoint, and (rank 0) save the model, its meta file and the report into ``--out``.

    ``callback``: defib's, whose diagnosis the result carries. ``metrics_of``: the final dev metrics by defib's names, from the Trainer's (``eval_`` taken off).
    """
    work = work_dir(opts.out)
    _bar_without_logs(trainer, opts.progress)
    resume = str(_last_checkpoint(work)) if opts.resume else None
    out = trainer.train(resume_from_checkpoint=resume)
    final = trainer.evaluate()  # the best checkpoint, reloaded at the end of training
    trainer.accelerator.wait_for_everyone()  # every rank done with the checkpoints before rank 0 moves them
    metrics = metrics_of({k[len("eval_"):]: float(v) for k, v in final.items() if k.startswith("eval_") and k not in
                          ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")})
    eval_s = sum(e.get("eval_runtime", 0.0) for e in trainer.state.log_history if "eval_runtime" in e)
    train_s = max(1e-9, float(out.metrics.get("train_runtime", 0.0)) - eval_s)  # training only, not dev passes
    epochs_run = float(trainer.state.epoch or 0.0)
    start_epoch = (_step_of(resume) or 0) / steps_per_epoch  # a resumed run trained only the rest
    samples = (epochs_run - start_epoch) * len(prep.train)
    result = TrainResult(out=opts.out, task=prep.space.task, loss=prep.loss, metrics=metrics, wall_s=0.0,
                         train_s=train_s, samples_per_s=samples / train_s, epochs_run=epochs_run,
                         best_step=_step_of(trainer.state.best_model_checkpoint), diagnosis=callback.diagnosis,
                         notes=prep.notes)
    if trainer.is_world_process_zero():
        trainer.save_model(str(work / "model"))  # model.safetensors, config, tokenizer
        (work / "model" / "training_args.bin").unlink(missing_ok=True)  # a pickle: safetensors and JSON only
        result.wall_s = time.time() - started
        _write_meta(work / "model" / META_FILE, opts, prep, result)
        _move_into_place(work, opts.out)
    return result


@contextlib.contextmanager
def quiet_transformers():
    """No transformers warnings or progress bars inside (loading and saving weights draw bars of their own).

    Its messages are not the user's business here: the load report lists a
    new head's weights as missing (expected when fine-tuning), and defib says
    what matters in its own words.
    """
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _bar_without_logs(trainer: Any, progress: bool) -> None:
    """The Trainer's step bar (with ``progress``) but never its raw metric dicts: defib prints one table at the end."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class StepBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(StepBar())


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _step_of(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    try:
        return int(checkpoint.rstrip("/").rsplit("-", 1)[-1])
    except ValueError:
        return None


def _metrics_fn(space: L.LabelSpace) -> Callable[[Any], dict[str, float]]:
    """Dev metrics on the user's own scale (regression targets mapped back).

    The truth is the Trainer's own ``label_ids``, in the order it predicted
    (with length grouping the evaluation order is not the file's).
    """
    def compute(pred: Any) -> dict[str, float]:
        out = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        if space.task == TOKEN_TASK:  # tag ids per position (_argmax); the truth is -100 but at first pieces
            return _tag_metrics(space, np.asarray(out), np.asarray(pred.label_ids))
        out, truth = np.asarray(out, dtype=np.float64), np.asarray(pred.label_ids)
        if space.task == "regression":
            scale = lambda v: v.reshape(-1) * space.target_std + space.target_mean  # noqa: E731
            return M.regression(scale(out), scale(truth.astype(np.float64)))
        if space.task == "classification":
            return M.classification(out.argmax(-1), truth.astype(np.int64), len(space.names))
        return M.multilabel(out, truth)

    return compute


def _argmax(logits: Any, labels: Any) -> Any:
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(-1)


def _tag_metrics(space: L.LabelSpace, pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Entity and token metrics over the words (first pieces); padded positions and later pieces are -100."""
    names = np.array(space.names, dtype=object)
    keep = truth != IGNORE
    pred_rows = [names[p[k]].tolist() for p, k in zip(pred, keep)]
    true_rows = [names[t[k]].tolist() for t, k in zip(truth, keep)]
    return M.tokens(pred_rows, true_rows, space.outside or "O")


def _write_meta(path: Path, opts: TrainOptions, prep: Prepared, result: TrainResult) -> None:
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    meta = {"defib_train": 1, "labels": prep.space.to_json(), "columns": {"text": opts.text,
            "text_pair": opts.text_pair, "label": opts.label}, "max_length": opts.max_length, "loss": prep.loss,
            "class_weights": prep.weights.tolist() if prep.weights is not None else None,
            "base_model": prep.model, "options": options, "dev_metrics": result.metrics,
            "train_rows": len(prep.train), "dev_rows": len(prep.dev), "epochs_run": result.epochs_run,
            "best_step": result.best_step, "wall_s": round(result.wall_s, 2),
            "samples_per_s": round(result.samples_per_s, 2)}
    path.write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _move_into_place(work: Path, out: Path) -> None:
    """Replace ``out`` by the finished model in two renames; the checkpoints go with the work folder."""
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(work / "model", out)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
