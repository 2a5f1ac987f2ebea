"""``defib predict``: a fine-tuned model's predictions on the user's scale, with checks on them.

The model folder is what ``defib train`` wrote (or any transformers
sequence- or token-classification model saved as safetensors). Before
predicting, the folder must prove it holds a trained head (a bi-encoder from
``--task similarity`` has none: it scores a pair by the cosine of its two
texts' embeddings); after predicting,
the predict-stage rules (E0xx) compare the reported predictions with the raw
outputs and the inputs with their token ids. A tagger's predictions are one
line per word: its sentence, its place, the word and its tag.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defib.report.json import atomic_file
from defib.signals.predict import PredictSignals
from defib.evidence import weights
from defib.evidence.model_files import check_model_files, read_json_object
from defib.evidence.params import input_keys
from defib.evidence.preflight.tokens import load_model_config, pick_max_length
from defib.evidence.readers import InputError, first_line, is_conll
from defib.signals.run import TOKEN_TASK
from defib.stages.predict import predict_diagnosis
from defib.train.data import Columns, read_columns
from defib.train.labels import SIMILARITY, TRAIN_TASKS, LabelSpace
from defib.train.pipeline import META_FILE, quiet_transformers
from defib.train.tokens import encode_words, first_pieces

HEADS = ("ForSequenceClassification", "ForTokenClassification")


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    space: LabelSpace
    columns: dict[str, str | None]
    max_length: int


def load(model_dir: str | Path) -> Loaded:
    """Load a fine-tuned model folder, or raise :class:`InputError` saying why it is not one."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such model folder")
    if not (folder / "config.json").exists():
        raise InputError(f"{folder}: not a transformers model folder (no config.json)")
    why = weights.refusal(folder)
    if why:
        raise InputError(why)
    check_model_files(folder)
    config = read_json_object(folder / "config.json") or {}
    meta = read_json_object(folder / META_FILE)
    if meta is not None:
        space, columns, max_length = _from_meta(folder / META_FILE, meta)
        if space.task == SIMILARITY:
            from defib.train.similarity import load_bi_encoder

            model = load_bi_encoder(folder, max_length)
            return Loaded(model, model.tokenizer, space, columns, max_length)
    arch = config.get("architectures") or []
    head_of = [h for a in arch if isinstance(a, str) for h in HEADS if a.endswith(h)] if isinstance(arch, list) else []
    if not head_of:
        raise InputError(f"{folder}: a bare encoder ({', '.join(map(str, arch)) or 'no architecture'}), not a "
                         "fine-tuned model: its prediction head was never trained (train one with defib train)")
    if meta is None:  # a transformers model trained elsewhere: its config says the task; no target scaling is known
        space = _space_from_config(config, tagger=head_of[0] == "ForTokenClassification")
        columns, max_length = {"text": None, "text_pair": None, "label": None}, None
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    if (space.task == TOKEN_TASK) != (head_of[0] == "ForTokenClassification"):
        raise InputError(f"{folder}: {META_FILE} describes {space.task} but the model is a {arch[0]}")
    auto = AutoModelForTokenClassification if space.task == TOKEN_TASK else AutoModelForSequenceClassification
    try:
        with quiet_transformers():
            model, info = auto.from_pretrained(str(folder), output_loading_info=True, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - a user's folder can fail in any way transformers or tokenizers has
        raise InputError(f"{folder}: cannot load the model ({type(exc).__name__}: {first_line(exc)})") from None
    head = [k for k in info.get("missing_keys", []) if "classifier" in k or "score" in k]
    if head:
        raise InputError(f"{folder}: the prediction head was never trained (no weights for {', '.join(head[:2])})")
    if model.config.num_labels != space.num_outputs:
        raise InputError(f"{folder}: the model has {model.config.num_labels} outputs but {META_FILE} describes "
                         f"{space.num_outputs} ({space.task})")
    if max_length is None:  # the tokenizer's, within what the model's positions hold (as defib train picks it)
        max_length, _ = pick_max_length(tokenizer, load_model_config(folder), None)
    model.eval()
    return Loaded(model, tokenizer, space, columns, max_length)


def _from_meta(path: Path, meta: dict[str, Any]) -> tuple[LabelSpace, dict[str, str | None], int]:
    """The label space, column names and max_length that ``defib train`` saved; a damaged file is one line."""
    try:
        space = LabelSpace.from_json(meta["labels"])
        columns, max_length = dict(meta["columns"]), int(meta["max_length"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a {META_FILE} that defib wrote ({type(exc).__name__}: {exc})") from None
    wrong = [k for k in ("text", "text_pair") if not isinstance(columns.get(k), (str, type(None)))]
    if (space.task not in TRAIN_TASKS or (space.num_outputs != 1 and not space.names) or wrong or max_length < 1
            or not all(isinstance(n, str) for n in space.names)
            or not (math.isfinite(space.target_std) and space.target_std > 0 and math.isfinite(space.target_mean))):
        raise InputError(f"{path}: not a {META_FILE} that defib wrote (its labels, columns or max_length are "
                         "out of range)")
    return space, columns, max_length


def _space_from_config(config: dict[str, Any], tagger: bool) -> LabelSpace:
    n = int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)
    names = [str(config.get("id2label", {}).get(str(i), i)) for i in range(n)]
    if tagger:
        return LabelSpace(TOKEN_TASK, names=names, outside="O" if "O" in names else None)
    if config.get("problem_type") == "regression" or n == 1:
        return LabelSpace("regression")
    task = "multilabel" if config.get("problem_type") == "multi_label_classification" else "classification"
    return LabelSpace(task, names=names)


@dataclass
class Predictions:
    values: list[Any]        # a prediction per row; a tagger's: a list of tags per row ("" for a word cut off)
    outputs: np.ndarray      # (rows, num_outputs); a tagger's: (words, tags) for the words it tagged
    signals: PredictSignals
    diagnosis: Any


def predict(loaded: Loaded, col: Columns, batch_size: int = 64, ignore: tuple[str, ...] = ()) -> Predictions:
    """Predict every row (sorted by length for dense batches, returned in file order); ``ignore``: rule codes."""
    import torch
    from transformers import DataCollatorWithPadding

    if loaded.space.task == SIMILARITY:
        from defib.train.similarity import cosines

        outputs, ids, lengths = cosines(loaded.model, col, batch_size)
        values = loaded.space.decode(outputs)
        signals, diagnosis = predict_diagnosis(SIMILARITY, loaded.max_length, list(zip(col.texts, col.pairs)), ids,
                                               outputs, values, ignore=ignore, lengths=lengths)
        return Predictions(values, outputs, signals, diagnosis)
    tagging = loaded.space.task == TOKEN_TASK
    if tagging:
        enc = encode_words(loaded.tokenizer, col.texts, loaded.max_length)
    else:
        enc = loaded.tokenizer(col.texts, col.pairs, truncation=True, max_length=loaded.max_length)
    ids = enc["input_ids"]
    keys = [k for k in input_keys(loaded.model.config) if k in enc]
    collate = DataCollatorWithPadding(loaded.tokenizer)
    order = np.argsort([len(r) for r in ids], kind="stable")
    outputs: list[np.ndarray] = [np.empty(0)] * len(ids)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = collate([{k: enc[k][i] for k in keys} for i in rows])
            logits = loaded.model(**batch).logits.float().cpu().numpy()  # (B, num_outputs), tagger (B, T, num_outputs)
            for b, row in enumerate(rows):
                outputs[row] = logits[b, first_pieces(enc, row)] if tagging else logits[b]
    if tagging:  # one output row per word tagged; words cut off by max_length get no tag
        tags = [loaded.space.decode(out) for out in outputs]
        values = [t + [""] * (len(words) - len(t)) for t, words in zip(tags, col.texts)]
        flat = np.concatenate(outputs).reshape(-1, loaded.space.num_outputs)
        signals, diagnosis = predict_diagnosis(TOKEN_TASK, loaded.max_length, [tuple(w) for w in col.texts], ids,
                                               flat, [t for row in tags for t in row], ignore=ignore)
        return Predictions(values, flat, signals, diagnosis)
    stacked = np.stack(outputs).astype(np.float32)
    values = loaded.space.decode(stacked)
    texts = list(zip(col.texts, col.pairs)) if col.pairs is not None else col.texts
    signals, diagnosis = predict_diagnosis(loaded.space.task, loaded.max_length, texts, ids, stacked, values,
                                           ignore=ignore)
    return Predictions(values, stacked, signals, diagnosis)


def write_csv(path: Path, space: LabelSpace, values: list[Any], outputs: np.ndarray,
              words: list[list[str]] | None = None) -> None:
    """``row,prediction`` (plus one probability column per class), written atomically.

    A tagger's (``words`` given): ``row,word,token,prediction``, a line per
    word, ``word`` counted from 1 within its row.
    """
    if space.task == TOKEN_TASK:
        with atomic_file(path, newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["row", "word", "token", "prediction"])
            for i, (tokens, tags) in enumerate(zip(words, values, strict=True)):
                w.writerows([i + 1, j + 1, token, tag] for j, (token, tag) in enumerate(zip(tokens, tags)))
        return
    header = ["row", "prediction"]
    extra: np.ndarray | None = None
    if space.task == "classification":
        z = outputs - outputs.max(1, keepdims=True)
        extra = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        header += [f"p_{n}" for n in space.names]
    elif space.task == "multilabel":
        extra = 1 / (1 + np.exp(-outputs))
        header += [f"p_{n}" for n in space.names]
    with atomic_file(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i, v in enumerate(values):
            row = [i + 1, f"{v:.6g}" if isinstance(v, float) else v]
            if extra is not None:
                row += [f"{p:.4f}" for p in extra[i]]
            w.writerow(row)


def read_inputs(loaded: Loaded, data: str | Path, text: str | None, text_pair: str | None) -> Columns:
    """The rows to predict; a tagger's are lists of words (a CoNLL file's tags are read, and ignored)."""
    text = text or loaded.columns.get("text")
    if text is None:
        raise InputError("--text: this model does not record its text column; name it with --text")
    if loaded.space.task == TOKEN_TASK:
        tags = loaded.columns.get("label") or "label"
        col = read_columns(data, text, label=tags if is_conll(data, [text, tags]) else None, sniff_conll=True)
        if not col.per_token:
            raise InputError(f"{data}: column {text!r} holds text, not lists of words: a token classification model "
                             "tags words (a CoNLL file, or a list of tokens per row)")
        return col
    pair = text_pair if text_pair is not None else loaded.columns.get("text_pair")
    if loaded.space.task == SIMILARITY and not pair:
        raise InputError("--text-pair: this bi-encoder scores sentence pairs; name the second text's column")
    return read_columns(data, text, pair)
