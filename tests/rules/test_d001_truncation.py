"""D001: truncation makes distinct texts identical.

Planted: every text starts with the same long preamble and ``max_length`` keeps
only the preamble. Near-miss: the same texts with a ``max_length`` that fits,
padded to ``max_length`` (with the tokenizer's mask): padding is harmless.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BertRegressor, assert_where, find, sentences, tokenizer, watch

from defib.rules.base import Severity
from defib.rules.data.d001_truncation import TruncationCollisions
from defib.signals.run import DataSignals, Signals

PREAMBLE = "in the opinion of our panel of critics the film we review this week"  # 14 tokens


def _rows(n: int = 64) -> list[tuple[str, float]]:
    return [(f"{PREAMBLE} {text}", y) for text, y in sentences(n, seed=3)]


def test_max_length_that_keeps_only_the_preamble_fires(tiny_model_dir):
    tok, rows = tokenizer(str(tiny_model_dir)), _rows()
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for i in range(0, len(rows), 16):
            texts, y = [t for t, _ in rows[i:i + 16]], torch.tensor([s for _, s in rows[i:i + 16]])
            enc = tok(texts, padding=True, truncation=True, max_length=12, return_tensors="pt")  # planted
            loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "D001")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "data.truncation" and f.severity == Severity.ERROR
    assert f.evidence["collision_share"] > 0.9 and f.evidence["max_length"] == 12
    assert_where(f, test_max_length_that_keeps_only_the_preamble_fires)


def test_padding_to_max_length_with_mask_and_room_for_the_text_is_silent(tiny_model_dir):
    tok, rows = tokenizer(str(tiny_model_dir)), _rows()
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for i in range(0, len(rows), 16):
            texts, y = [t for t, _ in rows[i:i + 16]], torch.tensor([s for _, s in rows[i:i + 16]])
            enc = tok(texts, padding="max_length", truncation=True, max_length=40, return_tensors="pt")
            loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    d = w.watcher.s.data
    assert d.tokenizer_rows == 64 and d.distinct_encodings == d.distinct_texts  # the tokenizer calls were seen
    assert find(w.diagnosis, "D001") is None
    assert find(w.diagnosis, "D002") is None  # padded to max_length, but masked


def test_pretokenized_batches_with_duplicate_rows_fire(tiny_model_dir):
    """Tokenized (and truncated) before training: the batches themselves show the duplicates."""
    tok, rows = tokenizer(str(tiny_model_dir)), _rows()
    enc = tok([t for t, _ in rows], padding=True, truncation=True, max_length=12, return_tensors="pt")
    y = torch.tensor([s for _, s in rows])
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for i in range(0, len(rows), 16):
            loss = F.mse_loss(model(enc["input_ids"][i:i + 16], enc["attention_mask"][i:i + 16]), y[i:i + 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "D001")
    assert f is not None and f.cause == "data.truncation"
    assert f.evidence["duplicate_row_share"] > 0.5


def _signals(**data) -> Signals:
    return Signals(step=5, data=DataSignals(**data))


def test_rule_on_signals():
    rule = TruncationCollisions()
    assert rule.check(_signals(tokenizer_rows=64, distinct_texts=64, distinct_encodings=64)) is None
    assert rule.check(_signals(tokenizer_rows=16, distinct_texts=16, distinct_encodings=1)) is None  # too few rows
    warn = rule.check(_signals(tokenizer_rows=100, distinct_texts=100, distinct_encodings=95))
    assert warn is not None and warn.severity == Severity.WARNING
    err = rule.check(_signals(tokenizer_rows=100, distinct_texts=100, distinct_encodings=50, rows_at_max_length=100,
                              tokenizer_max_length=8))
    assert err is not None and err.severity == Severity.ERROR and err.evidence["rows_at_max_length"] == 1.0
