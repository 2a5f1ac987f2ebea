"""Dev-set metrics on the user's scale: Pearson / Spearman / RMSE, accuracy / macro-F1, or entity F1 for tags.

Entity F1 is the CoNLL evaluation (conlleval, and seqeval's default mode):
an entity counts only when its span and type are both exact. seqeval is not a
dependency of defib, so the span reading is here (:func:`entity_spans`);
tests/test_entity_f1.py checks it against seqeval on random and malformed tags.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from defib.evidence.stats import pearson, ranks
from defib.signals.run import TOKEN_TASK

# the metric early stopping and the best checkpoint follow, per task (all: higher is better)
SELECT = {"regression": "pearson", "classification": "macro_f1", "multilabel": "macro_f1", TOKEN_TASK: "entity_f1"}
PREFIXES = "BIESLU"   # B-egin, I-nside, E-nd, S-ingle (IOBES), L-ast, U-nit (BILOU)


def regression(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred, y = pred.reshape(-1).astype(np.float64), y.reshape(-1).astype(np.float64)
    return {"pearson": pearson(pred, y), "spearman": pearson(ranks(pred), ranks(y)),
            "rmse": float(np.sqrt(np.mean((pred - y) ** 2))), "pred_std": float(pred.std())}


def classification(pred: np.ndarray, y: np.ndarray, k: int) -> dict[str, float]:
    f1 = [_f1(pred == c, y == c) for c in range(k) if (y == c).any() or (pred == c).any()]
    return {"accuracy": float((pred == y).mean()), "macro_f1": float(np.mean(f1)) if f1 else 0.0,
            "min_class_f1": float(min(f1)) if f1 else 0.0,  # the class an imbalanced run neglects shows here
            "classes_predicted": int(np.unique(pred).size),
            # classes the dev set holds that the model never predicts: not a flatline (other classes vary),
            # but the partial collapse that imbalanced labels cause, worth a line at the end of training
            "classes_missed": int(sum(1 for c in range(k) if (y == c).any() and not (pred == c).any()))}


def multilabel(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    p, t = pred > 0, y > 0.5
    per_label = [_f1(p[:, j], t[:, j]) for j in range(t.shape[1]) if t[:, j].any() or p[:, j].any()]
    return {"micro_f1": _f1(p.reshape(-1), t.reshape(-1)),
            "macro_f1": float(np.mean(per_label)) if per_label else 0.0,
            "exact_match": float((p == t).all(1).mean())}


def tokens(pred: Sequence[Sequence[str]], true: Sequence[Sequence[str]], outside: str) -> dict[str, float]:
    """Entity precision / recall / F1, token accuracy, and the share of words tagged other than ``outside``.

    ``pred`` and ``true`` hold one tag per word, sentence by sentence. The
    predicted non-O share next to the true one is the collapse to "every
    token O" in two numbers: a model can reach 90% token accuracy that way.
    """
    found = {(i, *span) for i, tags in enumerate(pred) for span in entity_spans(tags, outside)}
    real = {(i, *span) for i, tags in enumerate(true) for span in entity_spans(tags, outside)}
    hit = len(found & real)
    precision = hit / len(found) if found else 0.0
    recall = hit / len(real) if real else 0.0
    flat_pred = np.array([t for tags in pred for t in tags], dtype=object)
    flat_true = np.array([t for tags in true for t in tags], dtype=object)
    n = max(1, len(flat_true))
    return {"entity_f1": 2 * precision * recall / (precision + recall) if hit else 0.0,
            "entity_precision": precision, "entity_recall": recall,
            "token_accuracy": float((flat_pred == flat_true).sum() / n),
            "pred_non_o_share": float((flat_pred != outside).sum() / n),
            "true_non_o_share": float((flat_true != outside).sum() / n),
            "tags_predicted": int(len(set(flat_pred.tolist())))}


def entity_spans(tags: Sequence[str], outside: str) -> list[tuple[int, int, str]]:
    """(start, end, type) of each entity in one sentence's tags: IOB1, IOB2, IOBES, BILOU or plain IO tags.

    As conlleval chunks them: an entity ends at O, at a B/S/U tag, at a change
    of type, or after an E/S/L/U tag; an I tag after O starts one. A tag
    without a prefix ("PER") is its own type, IO style.
    """
    spans: list[tuple[int, int, str]] = []
    start: int | None = None
    kind, closed = "", False
    for i, tag in enumerate([*tags, outside]):
        prefix, typ = _tag_parts(tag, outside)
        if start is not None and (prefix in "OBSU" or typ != kind or closed):
            spans.append((start, i, kind))
            start = None
        if prefix != "O" and start is None:
            start, kind = i, typ
        closed = prefix in "ESLU"
    return spans


def _tag_parts(tag: str, outside: str) -> tuple[str, str]:
    if tag == outside:
        return "O", ""
    if len(tag) > 2 and tag[0] in PREFIXES and tag[1] in "-_":
        return tag[0], tag[2:]
    return "I", tag


def _f1(pred: np.ndarray, true: np.ndarray) -> float:
    tp = float((pred & true).sum())
    denom = float(pred.sum() + true.sum())
    return 2 * tp / denom if denom else 0.0
