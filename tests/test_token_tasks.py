"""Token classification (NER) and multi-label classification under ``defib.watch``, on tiny real models.

NER: sentences of filler words with a few names and places; each word's tag
(O, PER, LOC) goes to its first word piece, -100 to the later pieces and the
special tokens, as the transformers token-classification example aligns them.
Planted: the tags are mostly noise (a word is an entity by chance, nudged by
its identity), O is ~90% of the real tokens and the loss unweighted: every
token ends up predicted O (L004 on tokens, S001). Near-miss: the same O share
where the word decides its tag: the model learns the tags and defib stays
silent.

Multi-label: 8 features, 6 labels. Planted: rare, weakly signalled positives
under BCE without ``pos_weight``: every sigmoid falls below 0.5. Near-misses:
the same data with ``pos_weight``; labels that the features decide.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import defib

O, PER, LOC = 0, 1, 2
NAMES, PLACES = ["alice", "bob", "carol"], ["paris", "london", "berlin"]
FILL = ["the", "movie", "was", "a", "plot", "and", "it", "went", "to", "see", "with", "friends"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _find(d, code):
    return next((f for f in d.findings if f.code == code), None)


def _tagged(n: int, noisy: bool, seed: int = 0) -> list[tuple[list[str], list[int]]]:
    """``n`` (words, tags) sentences; entity words tagged by their kind, or (noisy) by chance with a nudge."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(FILL + NAMES + PLACES if rng.random() < 0.25 else FILL) for _ in range(rng.randint(4, 9))]
        if noisy:
            tags = [rng.choice((PER, LOC)) if rng.random() < (0.12 if w in NAMES + PLACES else 0.06) else O
                    for w in words]
        else:
            tags = [PER if w in NAMES else LOC if w in PLACES else O for w in words]
        rows.append((words, tags))
    return rows


def _encode(tok, rows, shift: int = 0):
    """Tokenize words; the first piece of each word gets its tag, everything else -100 (``shift``: moved right)."""
    enc = tok([w for w, _ in rows], is_split_into_words=True, padding=True, return_tensors="pt")
    labels = torch.full(enc["input_ids"].shape, -100)
    for i, (_, tags) in enumerate(rows):
        seen = set()
        for j, word in enumerate(enc.word_ids(i)):
            if word is not None and word not in seen:
                seen.add(word)
                labels[i, j] = tags[word]
    if shift:
        labels = torch.roll(labels, shift, dims=1)
    return enc, labels


def _token_model(model_dir):
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(str(model_dir), num_labels=3)


def _tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def test_every_token_predicted_o_is_named(tiny_model_dir):
    tok, rows = _tokenizer(tiny_model_dir), _tagged(960, noisy=True)
    with defib.watch(announce=None) as w:
        model = _token_model(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for i in range(0, len(rows), 16):
            enc, labels = _encode(tok, rows[i:i + 16])
            loss = model(**enc, labels=labels).loss  # the model's own unweighted cross-entropy
            opt.zero_grad()
            loss.backward()
            opt.step()
    s, d = w.watcher.s, w.diagnosis
    assert s.task == "token_classification" and d.to_dict()["task"] == "token_classification"
    assert -100 not in s.preds.label_counts and s.preds.ignored > 0  # specials, padding and later pieces left out
    f = _find(d, "L004")
    assert f is not None, [(x.code, x.message) for x in d.findings]
    assert f.evidence["unit"] == "token" and f.evidence["majority_share"] > 0.85
    assert f.evidence["majority_prediction_share"] >= 0.9
    assert "real tokens" in f.message
    flat = _find(d, "S001")
    assert flat is not None and "of recent tokens" in flat.message
    assert d.verdict == "flatlined"


class TokenHead(nn.Module):
    """A hand-made token head: the tiny encoder, a linear layer on every token."""

    def __init__(self, model_dir, k: int = 3):
        super().__init__()
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(str(model_dir))
        self.head = nn.Linear(self.encoder.config.hidden_size, k)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.head(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)


def test_a_healthy_tiny_ner_run_is_silent(tiny_model_dir):
    tok, rows = _tokenizer(tiny_model_dir), _tagged(1920, noisy=False)  # 120 steps: the rare tags take ~80
    with defib.watch(announce=None) as w:
        model = TokenHead(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
        for i in range(0, len(rows), 16):
            enc, labels = _encode(tok, rows[i:i + 16])
            logits = model(**enc)
            loss = F.cross_entropy(logits.view(-1, 3), labels.view(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    s, d = w.watcher.s, w.diagnosis
    assert s.task == "token_classification"
    counts = s.preds.label_counts
    assert set(counts) == {O, PER, LOC} and counts[O] / sum(counts.values()) > 0.85  # as dominant as the fault's
    assert len(s.preds.pred_counts) == 3  # every tag predicted
    assert d.verdict == "healthy", [(x.code, x.message) for x in d.findings]


def test_a_sequence_head_on_one_position_is_not_token_classification(tiny_model_dir):
    """``head(h)[:, 0]`` selects one position: a sequence's class, even though the head ran on every token."""
    tok, rows = _tokenizer(tiny_model_dir), _tagged(64, noisy=False)
    with defib.watch(announce=None) as w:
        model = TokenHead(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for i in range(0, len(rows), 16):
            enc, labels = _encode(tok, rows[i:i + 16])
            loss = F.cross_entropy(model(**enc)[:, 0], (labels == PER).any(1).long())
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.task == "classification" and not w.watcher.s.loss.per_token


# ---------------------------------------------------------------- multi-label
def _multilabel(n: int, decided: bool, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """8 features, 6 labels ~6% positive: decided by the features, or only nudged by them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    z = x[:, :6]
    if decided:
        return x, (z > 1.55).float()
    return x, (torch.rand(n, 6, generator=g) < torch.sigmoid(0.4 * z - 2.9)).float()


def _train_multilabel(x, y, pos_weight=None):
    with defib.watch(announce=None) as w:
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 6))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for i in range(0, len(x), 32):
            loss = F.binary_cross_entropy_with_logits(model(x[i:i + 32]), y[i:i + 32], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w


def test_multilabel_all_zero_collapse_with_unweighted_bce_is_named():
    x, y = _multilabel(3200, decided=False)
    w = _train_multilabel(x, y)
    s, d = w.watcher.s, w.diagnosis
    assert s.task == "multilabel" and len(s.preds.label_pos_rate) == 6
    assert max(s.preds.pred_pos_rate) == 0  # every sigmoid below 0.5
    f = _find(d, "L004")
    assert f is not None, [(x.code, x.message) for x in d.findings]
    assert f.cause == "loss.class_imbalance" and all(0 < q < 0.15 for q in f.evidence["label_pos_rate"])
    flat = _find(d, "S001")
    assert flat is not None and "no label is predicted for any input" in flat.message


def test_multilabel_with_pos_weight_is_silent():
    x, y = _multilabel(3200, decided=False)
    pos = y.sum(0)
    w = _train_multilabel(x, y, pos_weight=(len(y) - pos) / pos)
    assert w.watcher.s.loss.weighted
    assert _find(w.diagnosis, "L004") is None, [(f.code, f.message) for f in w.diagnosis.findings]


def test_multilabel_with_an_inverted_pos_weight_is_named():
    """pos_weight = pos / neg (where neg / pos was meant) weighs the rare positives down, not up: the constant
    predictor under those weights is the baseline the run's loss is judged by, and L004 names the weights."""
    x, y = _multilabel(3200, decided=False)
    pos = y.sum(0)
    w = _train_multilabel(x, y, pos_weight=pos / (len(y) - pos))
    s, d = w.watcher.s, w.diagnosis
    assert s.loss.pos_weight is not None and max(s.loss.pos_weight) < 1
    f = _find(d, "L004")
    assert f is not None, [(x.code, x.message) for x in d.findings]
    assert "pos / neg where neg / pos was meant" in f.message and f.evidence["pos_weight"] == s.loss.pos_weight
    assert f.where is not None and "pos_weight=pos_weight" in f.where.code  # the line that passed the weights
    assert max(s.preds.pred_pos_rate) == 0 and _find(d, "S001") is not None


def test_multilabel_labels_the_features_decide_are_silent():
    x, y = _multilabel(3200, decided=True)
    w = _train_multilabel(x, y)
    p = w.watcher.s.preds
    assert max(p.label_pos_rate) < 0.1 and min(p.pred_pos_rate) > 0  # as rare, and predicted
    assert w.diagnosis.verdict == "healthy", [(f.code, f.message) for f in w.diagnosis.findings]



def _padded_with_o(tok, rows):
    """The labels padded with the O tag instead of -100 (a collate's padding_value=0): padding supervised as O."""
    enc, labels = _encode(tok, rows)
    labels[enc["attention_mask"] == 0] = O
    return enc, labels


@pytest.mark.parametrize("encode, fires", [(_padded_with_o, True), (_encode, False)])
def test_labels_at_padding_are_named(tiny_model_dir, encode, fires):
    """D011: a token loss that supervises padding; the same run with padding at -100 is the near-miss."""
    tok, rows = _tokenizer(tiny_model_dir), _tagged(320, noisy=False)
    with defib.watch(announce=None) as w:
        model = _token_model(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for i in range(0, len(rows), 16):
            enc, labels = encode(tok, rows[i:i + 16])
            loss = model(**enc, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = _find(w.diagnosis, "D011")
    data = w.watcher.s.data
    assert data.labelled_tokens > 0
    if fires:
        assert f is not None and f.cause == "data.label_encoding", [(x.code, x.message) for x in w.diagnosis.findings]
        assert f.evidence["padding_share"] >= 0.05 and f.evidence["ignore_index"] == -100
    else:
        assert f is None and data.labelled_padding == 0


def test_labels_at_padding_are_named_for_a_loss_outside_the_model(tiny_model_dir):
    tok, rows = _tokenizer(tiny_model_dir), _tagged(320, noisy=False)
    with defib.watch(announce=None) as w:
        model = TokenHead(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for i in range(0, len(rows), 16):
            enc, labels = _padded_with_o(tok, rows[i:i + 16])
            loss = F.cross_entropy(model(**enc).view(-1, 3), labels.view(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = _find(w.diagnosis, "D011")
    assert f is not None and f.evidence["labelled_padding"] > 0, [(x.code, x.message) for x in w.diagnosis.findings]


def test_labels_padded_by_the_scripts_collate_point_at_it(tiny_model_dir):
    from torch.utils.data import DataLoader

    tok, rows = _tokenizer(tiny_model_dir), _tagged(320, noisy=False)

    def pad_with_o(batch):
        return _padded_with_o(tok, batch)

    with defib.watch(announce=None) as w:
        loader = DataLoader(rows, batch_size=16, collate_fn=pad_with_o)  # the script's collate
        model = _token_model(tiny_model_dir).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for enc, labels in loader:
            loss = model(**enc, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = _find(w.diagnosis, "D011")
    assert f is not None and f.where is not None and "pad_with_o" in f.where.code, f and f.where


def test_an_inverted_pos_weight_in_a_loss_module_points_where_the_weights_were_computed():
    x, y = _multilabel(3200, decided=False)
    with defib.watch(announce=None) as w:
        pos = y.sum(0)
        inverted = pos / (len(y) - pos)  # planted: pos / neg
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=inverted)
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 6))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for i in range(0, len(x), 32):
            loss = loss_fn(model(x[i:i + 32]), y[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = _find(w.diagnosis, "L004")
    assert f is not None and f.where is not None and "inverted = pos / (len(y) - pos)" in f.where.code, f and f.where
