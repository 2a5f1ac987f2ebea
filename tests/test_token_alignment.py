"""D012: word-level tags laid on word pieces, read from a token loss's targets under ``defib.watch``.

Sentences mix single-piece filler words with words MiniLM's tokenizer splits
(``unbelievably`` is five pieces), and names tagged PER. Planted: the tag
list of the words dropped between [CLS] and [SEP] and padded with -100 to the
piece count (``[-100] + tags + [-100]``), the way a script that forgets
``word_ids()`` builds it: the labels stop before the pieces do. Near-misses:
the same rows aligned with ``word_ids()``, on each word's first piece or on
every piece.
"""

from __future__ import annotations

import random

import pytest
import torch

import defib

O, PER = 0, 1
SPLIT = ["unbelievably", "xylophones", "tokenization", "londonderry", "#paris2024"]
FILL = ["the", "movie", "was", "a", "plot", "and", "it", "went", "to", "see"]
NAMES = ["alice", "bob", "carol"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _rows(n: int, seed: int = 0) -> list[tuple[list[str], list[int]]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(FILL + NAMES + SPLIT) for _ in range(rng.randint(5, 9))]
        rows.append((words, [PER if w in NAMES else O for w in words]))
    return rows


def _labels(enc, rows, how: str) -> torch.Tensor:
    labels = torch.full(enc["input_ids"].shape, -100)
    for i, (_, tags) in enumerate(rows):
        if how == "word_tags_on_pieces":  # planted: one tag per word, laid on the pieces from the first on
            n = min(len(tags), labels.shape[1] - 1)
            labels[i, 1:1 + n] = torch.tensor(tags[:n])
            labels[i, int(enc["attention_mask"][i].sum()) - 1:] = -100  # [SEP] and padding stay ignored
            continue
        prev = None
        for j, word in enumerate(enc.word_ids(i)):
            if word is not None and (how == "every_piece" or word != prev):
                labels[i, j] = tags[word]
            prev = word
    return labels


@pytest.mark.parametrize("how, fires", [("word_tags_on_pieces", True), ("first_piece", False),
                                        ("every_piece", False)])
def test_word_tags_laid_on_word_pieces_are_named(tiny_model_dir, how, fires):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    rows = _rows(320)
    with defib.watch(announce=None) as w:
        model = AutoModelForTokenClassification.from_pretrained(str(tiny_model_dir), num_labels=2).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for i in range(0, len(rows), 16):
            batch = rows[i:i + 16]
            enc = tok([words for words, _ in batch], is_split_into_words=True, padding=True, return_tensors="pt")
            loss = model(**enc, labels=_labels(enc, batch, how)).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = next((x for x in w.diagnosis.findings if x.code == "D012"), None)
    data = w.watcher.s.data
    if fires:
        assert f is not None and f.cause == "data.label_misalignment", [(x.code, x.message) for x in w.diagnosis.findings]
        assert w.diagnosis.causes[0].code == "D012", [(x.code, x.severity) for x in w.diagnosis.causes]
        assert f.evidence["rows_partly_labelled"] >= 16 and f.evidence["share"] >= 0.9
        assert f.where is not None and "is_split_into_words=True" in f.where.code, f.where
    else:
        assert f is None, f.message
        # first pieces: later pieces are unlabelled and lie inside most rows; every piece: nothing inside is
        assert data.token_rows_labels_stop <= 0.5 * max(1, data.token_rows_partly_labelled)
        if how == "every_piece":
            assert data.token_rows_partly_labelled == 0
