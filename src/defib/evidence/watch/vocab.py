"""What the checkpoint saved about its vocabulary: its size and its tokenizer's token -> id map, read from disk.

A tokenizer from another checkpoint, or one retrained on other text, loads
without complaint and yields ids in range, but they mean other tokens to the
embedding table. The checkpoint folder the model was loaded from (its config's
``_name_or_path``) usually holds the tokenizer it was trained with; comparing
that vocabulary with the one in use says whether the ids mean the same tokens.
The files are read directly (``vocab.txt``, ``vocab.json``, ``tokenizer.json``)
so that nothing is built or downloaded; ``config.json``'s ``vocab_size`` is the
embedding size the checkpoint was trained with, before any resize.
"""

from __future__ import annotations

import json
import os
from typing import Any

MAX_FILE_BYTES = 64 * 2**20  # a vocabulary file larger than this is not read (a checkpoint's is a few MB)


def checkpoint_dir(config: Any) -> str | None:
    """The folder a Hugging Face model was loaded from, if its config names one that exists on disk."""
    path = getattr(config, "_name_or_path", "") or getattr(config, "name_or_path", "") or ""
    return path if isinstance(path, str) and path and os.path.isdir(path) else None


def saved_vocab_size(folder: str) -> int | None:
    """``vocab_size`` in the checkpoint's ``config.json`` (the embedding rows it was trained with)."""
    data = _json(os.path.join(folder, "config.json"))
    size = data.get("vocab_size") if isinstance(data, dict) else None
    return size if isinstance(size, int) and size > 0 else None


def saved_vocab(folder: str) -> dict[str, int] | None:
    """The token -> id map of the tokenizer saved in ``folder``, or None when it saved none that can be read."""
    data = _json(os.path.join(folder, "tokenizer.json"))
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        vocab = data["model"].get("vocab")
        if isinstance(vocab, dict):
            out = {str(k): v for k, v in vocab.items() if isinstance(v, int)}
        elif isinstance(vocab, list):  # Unigram: [[piece, score], ...], the id is the position
            out = {str(e[0]): i for i, e in enumerate(vocab) if isinstance(e, list) and e}
        else:
            out = {}
        for added in data.get("added_tokens") or []:
            if isinstance(added, dict) and isinstance(added.get("id"), int):
                out[str(added.get("content"))] = added["id"]
        if out:
            return out
    data = _json(os.path.join(folder, "vocab.json"))
    if isinstance(data, dict) and data:
        return {str(k): v for k, v in data.items() if isinstance(v, int)}
    path = os.path.join(folder, "vocab.txt")
    if _readable(path):
        with open(path, encoding="utf-8") as fh:
            out = {}
            for i, line in enumerate(fh):
                out.setdefault(line.rstrip("\n"), i)
            return out or None
    return None


def agreement(saved: dict[str, int], in_use: dict[str, int]) -> float:
    """Share of the saved vocabulary's tokens that the tokenizer in use maps to the same id (1: the same vocabulary)."""
    if not saved:
        return 1.0
    return sum(1 for tok, i in saved.items() if in_use.get(tok) == i) / len(saved)


def _readable(path: str) -> bool:
    try:
        return os.path.isfile(path) and os.path.getsize(path) <= MAX_FILE_BYTES
    except OSError:
        return False


def _json(path: str) -> Any:
    if not _readable(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
