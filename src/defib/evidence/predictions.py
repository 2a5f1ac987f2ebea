"""What ``defib predict`` measures on a model's own predictions: their spread, the commonest class, colliding inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from defib.signals.predict import PredictSignals

MAX_COLLISIONS = 5   # example pairs of colliding rows kept for the message


def measure_predictions(task: str, max_length: int, texts: list[Any], ids: list[list[int]], outputs: np.ndarray,
                        values: list[Any], lengths: list[int] | None = None) -> PredictSignals:
    """The raw outputs (B, num_outputs) against the reported ``values``, and each input text against its ids.

    ``lengths``: the tokens of each row's longest model input, when that is not
    its ids' length (a bi-encoder's row is two texts, each encoded alone).
    """
    s = PredictSignals(task=task, rows=len(ids), max_length=max_length)
    if outputs.shape[-1] == 1:  # a score per row: a regression's, a bi-encoder's cosine
        s.output_spread = float(outputs.std())
    else:
        centred = outputs - outputs.mean(1, keepdims=True)
        s.output_spread = float(centred.std(0).mean())
        if task == "classification" and values:
            names, counts = np.unique(np.array(values, dtype=object).astype(str), return_counts=True)
            s.top_class = str(names[counts.argmax()])
            s.top_class_share = float(counts.max() / len(values))
    first: dict[tuple[int, ...], tuple[int, Any]] = {}
    for row, (text, seq) in enumerate(zip(texts, ids)):
        key = tuple(seq)
        seen = first.setdefault(key, (row, text))
        if seen[1] != text and len(s.collisions) < MAX_COLLISIONS:
            s.collisions.append((seen[0], row))
    s.distinct_texts = len(set(texts))
    s.distinct_encodings = len(first)
    s.rows_at_max_length = sum(1 for n in (lengths if lengths is not None else map(len, ids)) if n >= max_length)
    return s
