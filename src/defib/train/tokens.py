"""Token classification in ``defib train`` / ``defib predict``: word tags onto word pieces, and back.

A word's tag goes to its first word piece; its later pieces and the special
tokens get -100, which the loss and the metrics leave out (the alignment of
the transformers token-classification example). Tagging every piece instead
would count a long word several times and teach the model to tag pieces that
prediction never reads. Predictions are read back at the same first pieces:
one tag per word, as the user's file holds them. Words cut off by
``max_length`` have no first piece left, so no tag (training drops them,
prediction reports them untagged).

The positions come from the fast tokenizer's ``word_ids``; a slow
(Python) tokenizer has none, and is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from defib.evidence.readers import InputError
from defib.train.losses import IGNORE


def encode_words(tokenizer: Any, words: list[list[str]], max_length: int) -> Any:
    """The rows' words tokenized as pre-split words (``is_split_into_words``), with their ``word_ids``."""
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"{type(tokenizer).__name__} is a slow tokenizer: token classification needs a fast one "
                         "(its word_ids map word pieces to words); save the model with its tokenizer.json")
    return tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)


def first_pieces(enc: Any, row: int) -> list[int]:
    """Positions of each word's first piece in ``row``, in word order (words cut off by truncation absent)."""
    seen: set[int] = set()
    out = []
    for pos, word in enumerate(enc.word_ids(row)):
        if word is not None and word not in seen:
            seen.add(word)
            out.append(pos)
    return out


def align(enc: Any, tag_ids: list[np.ndarray]) -> list[list[int]]:
    """Per row, one label per position: the word's tag id at its first piece, -100 everywhere else."""
    out = []
    for row, tags in enumerate(tag_ids):
        labels = [IGNORE] * len(enc["input_ids"][row])
        for word, pos in enumerate(first_pieces(enc, row)):
            labels[pos] = int(tags[word])
        out.append(labels)
    return out
