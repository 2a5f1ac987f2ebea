"""M005: the head reads the encoder's vector at a padded position.

Measured: ``last_hidden_state[:, -1]`` on right-padded batches, by a head inside
the model, and by a head outside it called through dropout on a vector the
script picked a line earlier; the rule fires only with harm (flat predictions or
a loss at the baseline), since a pad position under a correct mask still sees
the whole text. Near-misses: the same runs learning, the [CLS] position on the
same batches, the last position with left padding (each row's last real token).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import encode, find, sentences, tokenizer, watch
from torch import nn
from transformers import AutoModel

from defib.rules.model.m005_padded_position import HeadReadsPadding
from defib.signals.run import ModelSignals, PredSignals, Signals

ROWS = sentences(96, seed=5)


class LastPosition(nn.Module):
    def __init__(self, model_dir):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(str(model_dir))
        self.head = nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        return self.head(h[:, -1]).squeeze(-1)  # planted


class ClsPosition(LastPosition):
    def forward(self, input_ids, attention_mask):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(h[:, 0]).squeeze(-1)


def _train(model, model_dir, **encoding):
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i in range(0, 64, 16):
        enc, y = encode(model_dir, ROWS[i:i + 16], **encoding)
        loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_last_position_with_right_padding_is_measured_and_silent_while_the_run_learns(tiny_model_dir):
    """Reading a pad position is measured; it is a cause only with harm: a pad position still attends to the
    whole text under a correct mask, and trains as well as [CLS] (bench/faults rt_meanpool_last_token)."""
    with watch() as w:
        _train(LastPosition(tiny_model_dir), tiny_model_dir)
    shares = [v for _, v in w.watcher.s.model.head_input_pad_share.pairs()]
    assert shares and min(shares) >= 0.8
    assert find(w.diagnosis, "M005") is None


def test_head_outside_the_model_reading_padding_is_measured(tiny_model_dir):
    encoder = AutoModel.from_pretrained(str(tiny_model_dir))
    head, dropout = nn.Linear(encoder.config.hidden_size, 1), nn.Dropout(0.1)
    opt = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()), lr=1e-3)
    with watch() as w:
        for i in range(0, 64, 16):
            enc, y = encode(tiny_model_dir, ROWS[i:i + 16])
            out = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            pooled = out.last_hidden_state[:, -1]  # planted
            loss = F.mse_loss(head(dropout(pooled)).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    m = w.watcher.s.model
    assert min(v for _, v in m.head_input_pad_share.pairs()) >= 0.8
    assert m.head_input_where is not None and m.head_input_where.code.startswith("pooled = ")


def test_cls_position_is_silent(tiny_model_dir):
    with watch() as w:
        _train(ClsPosition(tiny_model_dir), tiny_model_dir)
    assert len(w.watcher.s.model.head_input_pad_share) >= 2  # measured on padded batches
    assert find(w.diagnosis, "M005") is None


def test_last_position_with_left_padding_is_silent(tiny_model_dir):
    tok = tokenizer(str(tiny_model_dir))
    side, tok.padding_side = tok.padding_side, "left"
    try:
        with watch() as w:
            _train(LastPosition(tiny_model_dir), tiny_model_dir)
    finally:
        tok.padding_side = side
    shares = [v for _, v in w.watcher.s.model.head_input_pad_share.pairs()]
    assert shares and max(shares) == 0.0  # measured: every row read its last real token
    assert find(w.diagnosis, "M005") is None


def test_rule_on_signals():
    rule = HeadReadsPadding()

    def check(shares, spread=0.01):
        m, p = ModelSignals(), PredSignals(task="regression")
        for step, v in enumerate(shares, 1):
            m.head_input_pad_share.add(step, v)
            p.spread.add(step, spread)
        return rule.check(Signals(model=m, preds=p))

    assert check([0.9, 0.94, 0.94]) is not None
    assert check([0.9, 0.94, 0.94], spread=0.8) is None  # read from padding, and learning: no harm, no cause
    assert check([0.0, 0.0, 0.0]) is None
    assert check([0.9]) is None  # one measurement is not enough
