"""D002: padded batches reach the model without a usable attention mask.

Planted: padding to ``max_length`` and calling the model without the mask (and,
separately, with an inverted mask). Near-miss: padding to ``max_length`` WITH
the tokenizer's mask, which is harmless despite the common claim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BertRegressor, assert_where, find, sentences, tokenizer, watch

from defib.rules.base import Severity
from defib.rules.data.d002_attention_mask import PaddingNotMasked
from defib.signals.run import DataSignals, Signals

ROWS = sentences(96, seed=4)


def _batches(tok):
    for i in range(0, len(ROWS), 16):
        enc = tok([t for t, _ in ROWS[i:i + 16]], padding="max_length", truncation=True, max_length=32,
                  return_tensors="pt")
        yield enc, torch.tensor([s for _, s in ROWS[i:i + 16]])


def test_padded_ids_without_mask_fire(tiny_model_dir):
    tok = tokenizer(str(tiny_model_dir))
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for enc, y in _batches(tok):
            pred = model(enc["input_ids"])  # planted
            loss = F.mse_loss(pred, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "D002")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "data.attention_mask" and f.severity == Severity.ERROR
    assert f.evidence["no_mask"] == f.evidence["padded_batches"] == 6 and f.evidence["pad_token_id"] == 0
    assert_where(f, test_padded_ids_without_mask_fire)


def test_inverted_mask_fires(tiny_model_dir):
    tok = tokenizer(str(tiny_model_dir))
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for enc, y in _batches(tok):
            pred = model(enc["input_ids"], 1 - enc["attention_mask"])  # planted
            loss = F.mse_loss(pred, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "D002")
    assert f is not None and f.evidence["mask_inverted"] == 6
    assert "inverted" in f.message
    assert_where(f, test_inverted_mask_fires)


def _collate(rows, tok):
    """A hand-written padding collate that fills the mask on the wrong side of the slice (the only place in this
    file that puts a value under "attention_mask", so the where can follow the key here)."""
    ids = [tok(t)["input_ids"] for t, _ in rows]
    input_ids = torch.zeros((len(ids), max(len(x) for x in ids)), dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, x in enumerate(ids):
        input_ids[row, :len(x)] = torch.tensor(x)
        mask[row, len(x):] = 1  # planted
    return {"input_ids": input_ids, "attention_mask": mask, "labels": torch.tensor([s for _, s in rows])}


def test_an_inverted_mask_from_a_collate_points_at_the_line_that_filled_it(tiny_model_dir):
    tok = tokenizer(str(tiny_model_dir))
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for i in range(0, len(ROWS), 16):
            batch = _collate(ROWS[i:i + 16], tok)
            loss = F.mse_loss(model(batch["input_ids"], batch["attention_mask"]), batch["labels"])
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "D002")
    assert f is not None and f.evidence["mask_inverted"] > 0, w.diagnosis.findings
    assert_where(f, _collate)


def test_padding_to_max_length_with_the_mask_is_silent(tiny_model_dir):
    tok = tokenizer(str(tiny_model_dir))
    with watch() as w:
        model = BertRegressor(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for enc, y in _batches(tok):
            pred = model(enc["input_ids"], enc["attention_mask"])
            loss = F.mse_loss(pred, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    d = w.watcher.s.data
    assert d.batches_with_pad == 6  # the padding was seen ...
    assert find(w.diagnosis, "D002") is None  # ... and the mask judged correct


def test_rule_on_signals():
    rule = PaddingNotMasked()
    assert rule.check(Signals(data=DataSignals())) is None  # no padding seen
    assert rule.check(Signals(data=DataSignals(batches_with_pad=10, batches_pad_no_mask=4))) is None
    f = rule.check(Signals(data=DataSignals(batches_with_pad=10, batches_mask_all_ones_with_pad=9)))
    assert f is not None and "all ones" in f.message


class DropsTheMask(BertRegressor):
    """A wrapper whose forward takes the mask and does not pass it on to the encoder."""

    def forward(self, input_ids, attention_mask=None):
        h = self.encoder(input_ids=input_ids).last_hidden_state  # planted
        return self.head(h[:, 0]).squeeze(-1)


def test_a_mask_the_users_module_drops_before_the_encoder_fires_at_that_line(tiny_model_dir):
    tok = tokenizer(str(tiny_model_dir))
    with watch() as w:
        model = DropsTheMask(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for enc, y in _batches(tok):
            loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)  # the mask reaches the wrapper ...
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "D002")
    assert f is not None and f.evidence["no_mask"] == 6, w.diagnosis.findings
    assert_where(f, DropsTheMask)  # ... and is lost inside it
