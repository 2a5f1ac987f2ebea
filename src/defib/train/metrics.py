"""Dev-set metrics on the user's scale: Pearson / Spearman / RMSE, or accuracy / macro-F1."""

from __future__ import annotations

import numpy as np

# the metric early stopping and the best checkpoint follow, per task (all: higher is better)
SELECT = {"regression": "pearson", "classification": "macro_f1", "multilabel": "macro_f1"}


def regression(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred, y = pred.reshape(-1).astype(np.float64), y.reshape(-1).astype(np.float64)
    return {"pearson": _pearson(pred, y), "spearman": _pearson(_ranks(pred), _ranks(y)),
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


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0  # a constant prediction correlates with nothing


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (what Spearman's rho needs)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def _f1(pred: np.ndarray, true: np.ndarray) -> float:
    tp = float((pred & true).sum())
    denom = float(pred.sum() + true.sum())
    return 2 * tp / denom if denom else 0.0
