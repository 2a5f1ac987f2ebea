"""``defib predict``: a fine-tuned model's predictions on the user's scale, with checks on them.

The model folder is what ``defib train`` wrote (or any transformers
sequence-classification model saved as safetensors). Before predicting, the
folder must prove it holds a trained head; after predicting, the
predict-stage rules (E0xx) compare the reported predictions with the raw
outputs and the inputs with their token ids.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defib.report.json import atomic_file
from defib.signals.predict import PredictSignals
from defib.evidence import weights
from defib.evidence.params import input_keys
from defib.evidence.preflight.tokens import load_model_config, pick_max_length
from defib.evidence.readers import InputError
from defib.stages.predict import predict_diagnosis
from defib.train.data import Columns, read_columns
from defib.train.labels import LabelSpace
from defib.train.pipeline import META_FILE, quiet_transformers


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
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    arch = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in arch):
        raise InputError(f"{folder}: a bare encoder ({', '.join(arch) or 'no architecture'}), not a fine-tuned "
                         "model: its prediction head was never trained (train one with defib train)")
    meta_path = folder / META_FILE
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        space = LabelSpace.from_json(meta["labels"])
        columns, max_length = meta["columns"], int(meta["max_length"])
    else:  # a transformers model trained elsewhere: its config says the task; no target scaling is known
        space = _space_from_config(config)
        columns, max_length = {"text": None, "text_pair": None, "label": None}, None
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with quiet_transformers():
        model, info = AutoModelForSequenceClassification.from_pretrained(str(folder), output_loading_info=True,
                                                                         use_safetensors=True)
    head = [k for k in info.get("missing_keys", []) if "classifier" in k or "score" in k]
    if head:
        raise InputError(f"{folder}: the prediction head was never trained (no weights for {', '.join(head[:2])})")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if max_length is None:  # the tokenizer's, within what the model's positions hold (as defib train picks it)
        max_length, _ = pick_max_length(tokenizer, load_model_config(folder), None)
    model.eval()
    return Loaded(model, tokenizer, space, columns, max_length)


def _space_from_config(config: dict[str, Any]) -> LabelSpace:
    n = int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)
    if config.get("problem_type") == "regression" or n == 1:
        return LabelSpace("regression")
    names = [str(config.get("id2label", {}).get(str(i), i)) for i in range(n)]
    task = "multilabel" if config.get("problem_type") == "multi_label_classification" else "classification"
    return LabelSpace(task, names=names)


@dataclass
class Predictions:
    values: list[Any]
    outputs: np.ndarray
    signals: PredictSignals
    diagnosis: Any


def predict(loaded: Loaded, col: Columns, batch_size: int = 64, ignore: tuple[str, ...] = ()) -> Predictions:
    """Predict every row (sorted by length for dense batches, returned in file order); ``ignore``: rule codes."""
    import torch
    from transformers import DataCollatorWithPadding

    enc = loaded.tokenizer(col.texts, col.pairs, truncation=True, max_length=loaded.max_length)
    ids = enc["input_ids"]
    keys = [k for k in input_keys(loaded.model.config) if k in enc]
    collate = DataCollatorWithPadding(loaded.tokenizer)
    order = np.argsort([len(r) for r in ids], kind="stable")
    outputs = np.zeros((len(ids), loaded.space.num_outputs), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = collate([{k: enc[k][i] for k in keys} for i in rows])
            logits = loaded.model(**batch).logits.float()  # (B, num_outputs)
            outputs[rows] = logits.cpu().numpy()
    values = loaded.space.decode(outputs)
    texts = list(zip(col.texts, col.pairs)) if col.pairs is not None else col.texts
    signals, diagnosis = predict_diagnosis(loaded.space.task, loaded.max_length, texts, ids, outputs, values,
                                           ignore=ignore)
    return Predictions(values, outputs, signals, diagnosis)


def write_csv(path: Path, space: LabelSpace, values: list[Any], outputs: np.ndarray) -> None:
    """``row,prediction`` (plus one probability column per class), written atomically."""
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
    text = text or loaded.columns.get("text")
    if text is None:
        raise InputError("--text: this model does not record its text column; name it with --text")
    pair = text_pair if text_pair is not None else loaded.columns.get("text_pair")
    return read_columns(data, text, pair)
