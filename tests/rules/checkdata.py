"""Helpers for the check-stage rule tests (D101-D110): data in memory, checked with ``defib.check_data``.

The data are small synthetic columns (a few hundred rows) that plant exactly
one problem; the model is the tiny BERT checkpoint (``tiny_model_dir``: the
real MiniLM tokenizer, 64 positions), so a check takes well under a second.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import defib
from defib.diagnosis import Diagnosis
from defib.rules.base import Finding

WORDS = ["the", "movie", "was", "a", "plot", "and", "it", "good", "bad", "great", "awful", "story", "actor",
         "scene", "long", "short", "funny", "dark", "music", "end"]


def texts(n: int, seed: int = 0, lo: int = 4, hi: int = 12) -> list[str]:
    """``n`` distinct short sentences of ``lo``..``hi`` common words."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + f" number {i}")
    return out


def check(texts: list[str], labels: list[Any], model: Path, **kw: Any) -> Diagnosis:
    return defib.check_data(texts, labels, model=str(model), **kw)


def find(d: Diagnosis, code: str) -> Finding | None:
    return next((f for f in d.findings if f.code == code), None)


def model_copy(src: Path, dst: Path, **config: Any) -> Path:
    """A copy of a model folder with config.json fields overridden (no weights needed for a check)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, dst / f.name)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(config)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst
