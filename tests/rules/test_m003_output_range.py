"""M003: an output activation whose range cannot reach the targets.

Planted: ``torch.sigmoid`` on the regression output, trained on 0..5 scores.
Near-misses: the sigmoid scaled to the target range (``5 * sigmoid``); a
sigmoid output on targets in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, find, watch, word_data

from defib.rules.model.m003_output_range import OutputRange
from defib.signals.common import Where
from defib.signals.run import LossSignals, PredSignals, Signals

IDS, SCORE = word_data(320, seed=33)
TARGETS = ((SCORE + 4) * 5 / 8).clamp(0, 5)  # 0..5, like STS-B


def test_sigmoid_output_on_0_to_5_targets_fires():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, TARGETS, size=16):
            loss = F.mse_loss(torch.sigmoid(model(x)).squeeze(-1), y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "M003")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "model.output_range" and f.evidence["activation"] == "Sigmoid"
    assert f.evidence["targets_outside"] > 0.5
    assert f.evidence["bound_of"] == "activation"  # the model's own: its fix drops the activation
    assert_where(f, test_sigmoid_output_on_0_to_5_targets_fires)


def test_sigmoid_scaled_to_the_target_range_is_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, TARGETS, size=16):
            loss = F.mse_loss(5 * torch.sigmoid(model(x)).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert find(w.diagnosis, "M003") is None


def test_sigmoid_output_on_unit_interval_targets_is_silent():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, TARGETS / 5, size=16):
            loss = F.mse_loss(torch.sigmoid(model(x)).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert "SigmoidBackward0" in w.watcher.s.loss.producer  # the activation was seen ...
    assert find(w.diagnosis, "M003") is None  # ... and it fits the targets


def test_rule_on_signals():
    rule = OutputRange()
    relu = LossSignals(fn="mse_loss", family="regression", producer=("SqueezeBackward1", "ReluBackward0"))
    dead = PredSignals(task="regression", recent_targets=[0.5, 1.0, 0.2, 2.0], recent_preds=[0.0, 0.0, 0.0, 0.0])
    f = rule.check(Signals(loss=relu, preds=dead))  # targets within range, but the output is stuck at 0
    assert f is not None and f.evidence["activation"] == "Relu" and f.evidence["predictions_at_bound"] == 1.0
    alive = PredSignals(task="regression", recent_targets=[0.5, 1.0, 0.2, 2.0], recent_preds=[0.4, 1.1, 0.3, 1.8])
    assert rule.check(Signals(loss=relu, preds=alive)) is None


class SequentialHead(torch.nn.Module):
    """A bag of words whose head is an ``nn.Sequential`` ending in the activation module."""

    def __init__(self):
        super().__init__()
        self.words = BagOfWords()
        self.out = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Sigmoid())  # planted

    def forward(self, x):
        return self.out(self.words(x))


def test_an_activation_module_in_a_sequential_head_points_at_the_line_that_built_it():
    with watch() as w:
        model = SequentialHead()  # built inside the watch, as under `defib run`
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, TARGETS, size=16):
            loss = F.mse_loss(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "M003")
    assert f is not None and f.evidence["activation"] == "Sigmoid", w.diagnosis.findings
    assert_where(f, SequentialHead)


def test_an_activation_module_a_library_builds_is_not_the_users_line():
    """BERT's pooler builds its own nn.Tanh: no user line to point at (or to drop in a rerun), so none is claimed."""
    from transformers.models.bert.modeling_bert import BertConfig, BertPooler

    with watch():
        library = BertPooler(BertConfig(hidden_size=4)).activation
        users = torch.nn.Tanh()
    assert not hasattr(library, "_defib_built_at")
    assert users._defib_built_at[1] == test_an_activation_module_a_library_builds_is_not_the_users_line.__code__.co_firstlineno + 6


def _pairs(scale: float):
    a, sa = word_data(320, seed=41)
    b, sb = word_data(320, seed=42)
    sim = (torch.sigmoid(sa - sb) * scale)  # a similarity score in 0..scale
    return a, b, sim


def _biencoder(scale: float):
    a, b, sim = _pairs(scale)
    with watch() as w:
        model = BagOfWords(n_out=8)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for xa, xb, y in batches(a, b, sim, size=16):
            cos = F.cosine_similarity(model(xa), model(xb))
            loss = F.mse_loss(cos, y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w


def test_a_cosine_regressed_onto_0_to_5_scores_fires():
    f = find(_biencoder(5.0).diagnosis, "M003")
    assert f is not None and f.evidence["activation"] == "cosine similarity"
    assert f.evidence["targets_outside"] > 0.2
    assert f.evidence["bound_of"] == "loss" and f.evidence["loss_fn"] == "mse_loss"  # its fix scales the targets
    assert_where(f, _biencoder)


def test_a_cosine_regressed_onto_scores_in_its_range_is_silent():
    w = _biencoder(1.0)
    assert w.watcher.s.loss.bounded_input == ("cosine similarity", -1.0, 1.0)  # seen ...
    assert find(w.diagnosis, "M003") is None  # ... and the targets fit it


def _bce_single_output(targets):
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, targets, size=16):
            loss = F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w.diagnosis


def test_bce_on_one_output_against_0_to_5_scores_is_the_sigmoids_range():
    """A CrossEncoder(num_labels=1) trained on raw STS-B scores: BCE's own sigmoid cannot reach them."""
    d = _bce_single_output(TARGETS)
    f = find(d, "M003")
    assert f is not None and f.evidence["activation"].startswith("sigmoid")
    assert f.evidence["targets_outside"] > 0.5 and "labels / 5" in f.fix
    assert f.evidence["bound_of"] == "loss" and f.evidence["loss_fn"] == "binary_cross_entropy_with_logits"
    assert find(d, "D007") is None and find(d, "L002") is None  # continuous scores are neither class ids nor multi-label
    assert d.findings[0].code == "M003"


def test_bce_on_one_output_against_unit_scores_is_silent():
    d = _bce_single_output(TARGETS / 5)
    assert find(d, "M003") is None and find(d, "D007") is None and find(d, "L002") is None


def test_bce_on_one_output_against_class_ids_stays_a_label_encoding_error():
    d = _bce_single_output(TARGETS.round().clamp(0, 3))
    assert find(d, "M003") is None
    assert find(d, "D007") is not None


def test_a_cosine_points_where_its_targets_are_made_and_a_sigmoid_at_itself():
    """A cosine cannot be rescaled: the targets' scale is what to edit, where they are made (else the loss call).
    A sigmoid head is the line to edit even when the targets' line is known."""
    rule = OutputRange()
    made, call, sigmoid = Where("t.py", 3, "return rows"), Where("t.py", 11, "mse_loss"), Where("t.py", 7, "sigmoid")
    preds = PredSignals(task="regression", recent_targets=[0.5, 4.0, 2.0, 5.0], recent_preds=[0.9, 0.9, 0.8, 0.9])
    cos = LossSignals(fn="mse_loss", family="regression", bounded_input=("cosine similarity", -1.0, 1.0),
                      where=call, label_where=made)
    assert rule.check(Signals(loss=cos, preds=preds)).where == made
    cos.label_where = None
    assert rule.check(Signals(loss=cos, preds=preds)).where == call
    head = LossSignals(fn="mse_loss", family="regression", producer=("SqueezeBackward1", "SigmoidBackward0"),
                       where=call, producer_where=sigmoid, label_where=made)
    assert rule.check(Signals(loss=head, preds=preds)).where == sigmoid
