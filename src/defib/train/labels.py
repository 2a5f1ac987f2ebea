"""Labels as the model trains on them: the task, class ids, standardised targets, class weights.

Everything that must be undone or repeated at prediction time (the target
scale, the class or tag names) is kept in :class:`LabelSpace`, which is saved with
the model as ``defib_train.json``. Without ``--task``, the task is the one
``defib check`` infers from the same labels (:mod:`defib.evidence.task`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from defib.evidence.preflight.labels import check_task
from defib.evidence.readers import InputError
from defib.evidence.task import TASKS, infer_task, label_signals_of
from defib.signals.check import LabelSignals
from defib.signals.run import TOKEN_TASK
from defib.train.data import Columns

IMBALANCE_RATIO = 1.5     # largest class / smallest class above this: weight the loss (Rotten Tomatoes: 6.7)
MAX_CLASSES = 1000        # more distinct labels than this in a classification file is a regression target
SIMILARITY = "similarity"  # a bi-encoder scoring sentence pairs by cosine (train/similarity.py): never inferred
TRAIN_TASKS = (*TASKS, SIMILARITY)
SCORED = ("regression", SIMILARITY)  # a number per row, shifted and scaled for training


@dataclass
class LabelSpace:
    """How labels map to model outputs, and back."""

    task: str
    names: list[str] = field(default_factory=list)   # class names (classification / multilabel) or tags, in id order
    # targets are (y - target_mean) / target_std for training: regression's mean and standard deviation;
    # similarity's minimum and range (max - min), which puts the scores in [0, 1] as the cosine losses expect
    target_mean: float = 0.0
    target_std: float = 1.0
    outside: str | None = None                        # tokens: the tag of no entity ("O", else the commonest tag)

    @property
    def num_outputs(self) -> int:
        return 1 if self.task in SCORED else len(self.names)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LabelSpace":
        return cls(task=data["task"], names=list(data.get("names", [])), target_mean=float(data["target_mean"]),
                   target_std=float(data["target_std"]), outside=data.get("outside"))

    # ---------------------------------------------------------------- encode
    def encode(self, col: Columns, column: str) -> np.ndarray | list[np.ndarray]:
        """Labels as training targets: standardised floats, class ids, multi-hot rows, or tag ids per word."""
        raw = col.labels or []
        if self.task in SCORED:
            return (_floats(raw, col, column, self.task) - self.target_mean) / self.target_std
        index = {name: i for i, name in enumerate(self.names)}
        if self.task == TOKEN_TASK:
            rows = []
            for row, tags in enumerate(raw):
                keys = [_class_key(t) for t in tags]
                unknown = next((k for k in keys if k not in index), None)
                if unknown is not None:
                    raise InputError(f"{col.path}: row {row + 1}: tag {unknown!r} in column {column!r} is not a tag "
                                     f"of the training data ({', '.join(self.names[:10])})")
                rows.append(np.array([index[k] for k in keys], dtype=np.int64))
            return rows
        if self.task == "classification":
            ids = np.empty(len(raw), dtype=np.int64)
            for row, value in enumerate(raw):
                key = _class_key(value)
                if key not in index:
                    raise InputError(f"{col.path}: row {row + 1}: label {key!r} in column {column!r} is not a class "
                                     f"of the training data ({', '.join(self.names[:10])})")
                ids[row] = index[key]
            return ids
        hot = np.zeros((len(raw), len(self.names)), dtype=np.float32)
        for row, value in enumerate(raw):
            for key in _label_set(value, col, row, column):
                if key not in index:
                    raise InputError(f"{col.path}: row {row + 1}: label {key!r} is not one of the training labels")
                hot[row, index[key]] = 1.0
        return hot

    def decode(self, outputs: np.ndarray) -> list[Any]:
        """Model outputs (N, num_outputs) as predictions on the user's scale / names."""
        if self.task == "regression":
            return (outputs.reshape(-1) * self.target_std + self.target_mean).tolist()
        if self.task == SIMILARITY:  # cosines: CoSENT learns the scores' order, not their scale, so none is undone
            return outputs.reshape(-1).tolist()
        if self.task in ("classification", TOKEN_TASK):  # tokens: one row of outputs per word
            return [self.names[i] for i in outputs.argmax(-1)]
        return ["|".join(self.names[j] for j in np.flatnonzero(row > 0)) for row in outputs]

    def class_counts(self, targets: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Rows per class (multilabel: per label); tags count tokens."""
        if self.task == TOKEN_TASK:
            return np.bincount(np.concatenate(targets), minlength=len(self.names))
        if self.task == "classification":
            return np.bincount(targets, minlength=len(self.names))
        return targets.sum(0) if self.task == "multilabel" else np.zeros(0)


def implied_task(col: Columns, column: str, task: str | None = None) -> str:
    """The task the labels imply, every label checked as ``defib check`` checks it, whatever ``--task`` says.

    A missing, NaN or infinite label, or a column mixing numbers and text, is
    an :class:`InputError` naming the row; so are token lists whose tag lists
    differ in length (D111 in defib check), and a ``task`` of token
    classification for labels that are not tags per token, or the reverse.
    """
    return _signals_and_task(col, column, task)[1]


def _signals_and_task(col: Columns, column: str, task: str | None) -> tuple[LabelSignals, str]:
    lab = label_signals_of(col.labels or [], column, str(col.path), tokens=col.texts if col.per_token else None)
    inferred = infer_task(lab)[0]
    if task is not None and TOKEN_TASK in (task, inferred):
        check_task(task, lab, str(col.path))
    if lab.misaligned_rows:
        shown = ", ".join(f"row {e['row']} ({e['tokens']} tokens, {e['tags']} tags)"
                          for e in lab.misaligned_examples[:3])
        raise InputError(f"{col.path}: {lab.misaligned_rows} rows have a tag list not as long as their token list: "
                         f"{shown}; one tag per word is needed (defib check lists them: D111)")
    return lab, inferred


def build(col: Columns, column: str, task: str | None) -> LabelSpace:
    """Infer (or check) the task from the training labels and fit the label space on them."""
    raw = col.labels or []
    lab, inferred = _signals_and_task(col, column, task)  # checks every label even when --task is given
    task = task or inferred
    if task == TOKEN_TASK:
        names = _ordered({_class_key(k) for k in lab.counts or {}})
        if len(names) < 2:
            raise InputError(f"{col.path}: column {column!r} holds one tag ({names[0]!r}): nothing to learn")
        commonest = _class_key(next(iter(lab.counts or {})))  # counts come commonest first
        return LabelSpace(task, names=names, outside="O" if "O" in names else commonest)
    if task in SCORED:
        y = _floats(raw, col, column, task)
        std = float(y.std())
        if not std > 0:
            raise InputError(f"{col.path}: every label in column {column!r} is {y[0]:g}: nothing to learn")
        if task == SIMILARITY:  # the range observed, onto [0, 1]
            return LabelSpace(task, target_mean=float(y.min()), target_std=float(y.max() - y.min()))
        return LabelSpace(task, target_mean=float(y.mean()), target_std=std)
    if task == "classification":
        keys = [_class_key(v) for v in raw]
        names = _ordered(set(keys))
        if len(names) < 2:
            raise InputError(f"{col.path}: column {column!r} holds one class ({names[0]!r}): nothing to learn")
        if len(names) > MAX_CLASSES or any(_is_fraction(k) for k in names[:50]):
            raise InputError(f"{col.path}: column {column!r} holds {len(names)} distinct values such as "
                             f"{names[0]!r}: a continuous target (use --task regression)")
        return LabelSpace(task, names=names)
    names = _ordered({k for row, v in enumerate(raw) for k in _label_set(v, col, row, column)})
    if not names:
        raise InputError(f"{col.path}: column {column!r} holds no labels")
    return LabelSpace(task, names=names)


WEIGHTINGS = {"balanced": 1.0, "sqrt": 0.5}  # class weight proportional to count ** -power


def class_weights(counts: np.ndarray, always: bool = False, how: str = "balanced") -> np.ndarray | None:
    """Per-class weights when the classes are imbalanced (or ``always``), else None.

    ``balanced`` is n / (k * count) (scikit-learn's "balanced"): every class
    weighs the same in the loss, which makes argmax maximise the mean recall.
    ``sqrt`` is count ** -0.5, half-way on a log scale between that and no
    weights: it gives up less precision on the common classes for the rare
    ones' recall. Both are scaled so that the mean weight over the training
    examples is 1, so the loss and the learning rate keep their size.
    """
    present = counts[counts > 0]
    if not always and (present.size < 2 or present.max() / present.min() < IMBALANCE_RATIO):
        return None
    raw = np.maximum(counts, 1).astype(np.float64) ** -WEIGHTINGS[how]
    weights = raw * counts.sum() / max(float((counts * raw).sum()), 1e-12)
    return weights.astype(np.float32)


# ---------------------------------------------------------------- parsing
def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _floats(raw: list[Any], col: Columns, column: str, task: str) -> np.ndarray:
    out = np.empty(len(raw), dtype=np.float64)
    for row, value in enumerate(raw):
        x = _number(value)
        if x is None or not math.isfinite(x):
            raise InputError(f"{col.path}: row {row + 1}: label {value!r} in column {column!r} is not a finite "
                             f"number (--task {task})")
        out[row] = x
    return out


def _class_key(value: Any) -> str:
    x = _number(value)
    if x is not None and x == round(x):
        return str(int(x))  # 1, 1.0 and "1" are the same class
    return str(value).strip()


def _is_fraction(key: str) -> bool:
    x = _number(key)
    return x is not None and x != round(x)


def _ordered(keys: set[str]) -> list[str]:
    """Numeric class names in numeric order, others alphabetically."""
    if all(_number(k) is not None for k in keys):
        return sorted(keys, key=lambda k: float(k))
    return sorted(keys)


def _label_set(value: Any, col: Columns, row: int, column: str) -> list[str]:
    """A multilabel cell: a JSON list (in JSON Lines or as text) or names separated by '|'."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise InputError(f"{col.path}: row {row + 1}: column {column!r} is not a JSON list: {text[:40]!r}") \
                    from None
        else:
            value = [v for v in text.split("|") if v.strip()]
    if not isinstance(value, list):
        raise InputError(f"{col.path}: row {row + 1}: column {column!r} is not a list of labels ({value!r})")
    return [_class_key(v) for v in value]
