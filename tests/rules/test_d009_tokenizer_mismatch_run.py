"""D009: the token ids a watched run feeds the model do not fit its checkpoint.

Planted: a tokenizer whose vocabulary was retrained (the same tokens at other
ids), one that cannot spell the task's words (most become [UNK]), a model whose
embedding table is smaller than the tokenizer's ids (an IndexError on CPU,
diagnosed all the same), and a resized embedding whose new, untrained rows carry
most of the text. Near-misses: the checkpoint's own tokenizer; a handful of
characters it cannot spell; two added special tokens on resized rows.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import BertRegressor, assert_where, find, sentences, watch
from transformers import AutoTokenizer

from defib.rules.base import Severity
from defib.rules.data.d009_tokenizer_mismatch_run import TokenizerMismatchAtRunTime
from defib.signals.run import DataSignals, Signals

ROWS = sentences(64, seed=9)
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _train(model, tok, rows=ROWS, steps=4, keywords=False):
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i in range(0, min(len(rows), 16 * steps), 16):
        batch = rows[i:i + 16]
        enc = tok([t for t, _ in batch], padding=True, truncation=True, max_length=32, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        pred = model(input_ids=ids, attention_mask=mask) if keywords else model(ids, mask)
        loss = F.mse_loss(pred, torch.tensor([y for _, y in batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()


def _vocab_tokenizer(model_dir, folder, keep):
    """A WordPiece tokenizer saved in ``folder`` whose vocabulary is ``keep(tokens)`` of the checkpoint's."""
    own = AutoTokenizer.from_pretrained(str(model_dir))
    tokens = sorted(own.get_vocab(), key=own.get_vocab().get)
    type(own)(vocab={t: i for i, t in enumerate(keep(tokens))}).save_pretrained(str(folder))
    return folder


def _retrained(tokens):
    """The same tokens, specials first, the rest in reverse: what a vocabulary retrained on other text looks like."""
    rest = [t for t in tokens if t not in SPECIAL]
    return list(SPECIAL) + rest[::-1]


def test_retrained_vocabulary_fires(tiny_model_dir, tmp_path):
    folder = _vocab_tokenizer(tiny_model_dir, tmp_path / "retrained", _retrained)
    with watch() as w:
        tok = AutoTokenizer.from_pretrained(str(folder))  # planted
        _train(BertRegressor(tiny_model_dir), tok)
    f = find(w.diagnosis, "D009")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "data.tokenizer_mismatch" and f.severity == Severity.ERROR
    assert f.evidence["vocab_agreement"] < 0.01 and f.evidence["unk_share"] < 0.01  # in range, no [UNK]: only the map
    assert_where(f, test_retrained_vocabulary_fires)


def test_a_vocabulary_trained_anew_points_at_the_line_that_trained_it(tiny_model_dir):
    """``train_new_from_iterator`` makes a tokenizer without ``from_pretrained``: its line is where it was made."""
    base = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    with watch() as w:
        tok = base.train_new_from_iterator([[t for t, _ in ROWS]], vocab_size=400)  # planted
        _train(BertRegressor(tiny_model_dir), tok)
    f = find(w.diagnosis, "D009")
    assert f is not None, w.diagnosis.findings
    assert f.evidence["vocab_agreement"] < 0.1
    assert_where(f, test_a_vocabulary_trained_anew_points_at_the_line_that_trained_it)


def test_vocabulary_that_cannot_spell_the_text_fires(tiny_model_dir, tmp_path):
    folder = _vocab_tokenizer(tiny_model_dir, tmp_path / "small", lambda tokens: tokens[:2000])  # same ids, few words
    with watch() as w:
        tok = AutoTokenizer.from_pretrained(str(folder))  # planted
        _train(BertRegressor(tiny_model_dir), tok)
    f = find(w.diagnosis, "D009")
    assert f is not None, w.diagnosis.findings
    assert f.evidence["unk_share"] > 0.3 and any("unknown token" in p for p in f.evidence["problems"])
    assert_where(f, test_vocabulary_that_cannot_spell_the_text_fires)


@pytest.mark.parametrize("keywords", [False, True], ids=["positional", "keywords"])
def test_ids_beyond_the_embedding_table_crash_and_are_named(tiny_model_dir, keywords):
    model = BertRegressor(tiny_model_dir)
    model.encoder.resize_token_embeddings(1000)  # the ids of most words now lie past the table
    with pytest.raises(IndexError):
        with watch() as w:
            tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))  # planted
            _train(model, tok, keywords=keywords)  # a crash in a call by keyword reaches defib without the batch
    f = find(w.diagnosis, "D009")
    assert f is not None, (w.diagnosis.findings, w.watcher.s.internal_errors)
    assert f.evidence["max_id"] >= 1000 and f.evidence["embedding_rows"] == 1000
    assert "embedding table has 1,000 rows" in f.message
    assert_where(f, test_ids_beyond_the_embedding_table_crash_and_are_named)


def test_text_on_untrained_rows_fires(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    words = sorted({word for text, _ in ROWS for word in text.split()})
    new = [f"{word}_v2" for word in words]
    tok.add_tokens(new)  # every word of the text now has a token of its own, on a row the checkpoint never had
    model = BertRegressor(tiny_model_dir)
    model.encoder.resize_token_embeddings(len(tok))
    rows = [(" ".join(f"{word}_v2" for word in text.split()), y) for text, y in ROWS]
    with watch() as w:
        _train(model, tok, rows)
    f = find(w.diagnosis, "D009")
    assert f is not None, w.diagnosis.findings
    assert f.evidence["untrained_share"] > 0.5 and f.evidence["checkpoint_vocab"] == tok.vocab_size


def test_own_tokenizer_is_silent(tiny_model_dir):
    with watch() as w:
        _train(BertRegressor(tiny_model_dir), AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    d = w.watcher.s.data
    assert d.tokens_seen > 100 and d.vocab_agreement == 1.0 and d.ids_beyond_vocab == 0  # looked
    assert find(w.diagnosis, "D009") is None


def test_a_handful_of_unknown_characters_is_silent(tiny_model_dir):
    rows = [(f"{t} 🦜" if i % 16 == 0 else t, y) for i, (t, y) in enumerate(ROWS)]
    with watch() as w:
        _train(BertRegressor(tiny_model_dir), AutoTokenizer.from_pretrained(str(tiny_model_dir)), rows)
    assert w.watcher.s.data.unk_tokens > 0  # seen, and too few to matter
    assert find(w.diagnosis, "D009") is None


def test_two_added_special_tokens_are_silent(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tok.add_special_tokens({"additional_special_tokens": ["[E1]", "[/E1]"]})
    model = BertRegressor(tiny_model_dir)
    model.encoder.resize_token_embeddings(len(tok))
    rows = [(f"[E1] {t} [/E1]", y) for t, y in ROWS]
    with watch() as w:
        _train(model, tok, rows)
    assert w.watcher.s.data.untrained_row_tokens > 0  # seen, a small share
    assert find(w.diagnosis, "D009") is None


def test_rule_on_signals():
    rule = TokenizerMismatchAtRunTime()

    def check(**fields):
        base = {"tokens_seen": 1000, "unk_token_id": 100, "embedding_rows": 30522}
        return rule.check(Signals(data=DataSignals(**{**base, **fields})))

    assert check() is None
    assert check(unk_tokens=5) is None                                         # 0.5%: a stray character
    assert check(unk_tokens=20).severity == Severity.WARNING                   # 2%
    assert check(unk_tokens=80).severity == Severity.ERROR                     # 8%
    assert check(unk_tokens=8, tokens_seen=50) is None                         # 16% of too few tokens
    assert check(ids_beyond_vocab=3, max_id=31000) is not None
    assert check(tokens_seen=0, tokenizer_max_id=40000) is not None             # no batch read: the tokenizer's ids
    assert check(vocab_agreement=0.95) is None and check(vocab_agreement=0.3) is not None
    assert check(untrained_row_tokens=100) is None and check(untrained_row_tokens=400) is not None
