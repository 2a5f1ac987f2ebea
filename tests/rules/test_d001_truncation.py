"""D001: truncation makes distinct texts identical.

Planted: every text starts with the same long preamble and ``max_length`` keeps
only the preamble. Near-miss: the same texts with a ``max_length`` that fits,
padded to ``max_length`` (with the tokenizer's mask): padding is harmless.
"""

from __future__ import annotations

import pytest
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


# ---------------------------------------------------------------- a cap below the typical length
def _sentence_trainer(model_dir, out_dir, data: dict, cap: int, steps: int = 6):
    """sentence-transformers' own trainer on ``data``; the cap set the way its users do, on the model."""
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.modules import Pooling

    torch.manual_seed(0)
    encoder = Transformer(str(model_dir))
    model = SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), "mean")], device="cpu")
    model.max_seq_length = cap  # planted
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=16, max_steps=steps, learning_rate=1e-3,
        report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=True, seed=0)
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(data),
                                      loss=losses.CoSENTLoss(model))


def _pairs(n: int, long_every: int = 0) -> dict[str, list]:
    """Sentence pairs of 3-14 words (every ``long_every``-th first sentence 40 words long), scored by overlap."""
    rows = sentences(2 * n, seed=5)
    first = [t if not long_every or i % long_every else " ".join([t] * 6) for i, (t, _) in enumerate(rows[:n])]
    second = [t for t, _ in rows[n:]]
    score = [len(set(a.split()) & set(b.split())) / len(set(a.split())) for a, b in zip(first, second)]
    return {"sentence1": first, "sentence2": second, "score": score}


def test_max_seq_length_below_the_typical_sentence_fires(tiny_model_dir, tmp_path):
    """``model.max_seq_length = 5``: sentence-transformers cuts at the tokenizer's own limit (no max_length=), so
    most sentences lose their second half while staying distinct enough for the collision count."""
    pytest.importorskip("sentence_transformers")
    with watch() as w:
        _sentence_trainer(tiny_model_dir, tmp_path, _pairs(96), cap=5).train()
    f = find(w.diagnosis, "D001")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "data.truncation" and f.severity >= Severity.WARNING
    assert f.evidence["max_length"] == 5 and f.evidence["text_lost_median"] >= 0.25
    assert f.evidence["rows_at_max_length"] > 0.5
    assert w.diagnosis.verdict in ("at_risk", "flatlined")
    assert_where(f, _sentence_trainer)


@pytest.mark.parametrize("cap, long_every", [(64, 0), (16, 10)], ids=["room-for-all", "cuts-the-long-tail"])
def test_cap_that_fits_the_typical_sentence_is_silent(tiny_model_dir, tmp_path, cap, long_every):
    """A cap above every sentence, and one that only cuts the one long sentence in ten: nothing to say."""
    pytest.importorskip("sentence_transformers")
    with watch() as w:
        _sentence_trainer(tiny_model_dir, tmp_path, _pairs(96, long_every), cap=cap).train()
    d = w.watcher.s.data
    assert d.length_sample_rows >= 32 and d.tokenizer_max_length == cap  # the cut was measured
    if long_every:
        assert 0 < d.rows_at_max_length < d.tokenizer_rows / 4
    assert d.text_lost_median == 0.0
    assert find(w.diagnosis, "D001") is None, w.diagnosis.findings


def test_rule_on_lost_text():
    rule = TruncationCollisions()
    kept = dict(tokenizer_rows=100, distinct_texts=100, distinct_encodings=100, rows_at_max_length=90,
                tokenizer_max_length=8, length_sample_rows=100)
    assert rule.check(_signals(**kept, text_lost_median=0.2)) is None  # most rows cut, but only their last words
    assert rule.check(_signals(**dict(kept, length_sample_rows=16), text_lost_median=0.6)) is None  # too few rows
    warn = rule.check(_signals(**kept, text_lost_median=0.3))
    assert warn is not None and warn.severity == Severity.WARNING and warn.evidence["text_lost_median"] == 0.3
    err = rule.check(_signals(**kept, text_lost_median=0.6))
    assert err is not None and err.severity == Severity.ERROR
