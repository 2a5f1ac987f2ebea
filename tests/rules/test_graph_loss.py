"""Hand-written losses: predictions and targets read from the graph ``backward()`` receives.

No loss call defib hooks is made; the rules must see the same as with ``F.mse_loss`` or
``F.cross_entropy``. Planted: a squared error broadcasting ``[B, 1]`` against ``[B]`` (L001 and
S001, in the loop and inside a helper function), the same with a head outside the model on a
hidden state the script picks, majority collapses under hand-written cross-entropy in its gather and
index forms (L004). Near-misses that must stay healthy: the squeezed squared error, an L1, the
squared error with an auxiliary weight penalty, the head outside the model trained right.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import BagOfWords, assert_where, batches, encode, find, sentences, watch, word_data
from torch import nn

from defib.evidence.watch.graph import read_loss

IDS, SCORE = word_data(60 * 128, seed=35)  # as test_s001: 60 steps of 128


def squared_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).mean()  # planted


def _train_bag(loss_of, steps: int = 60, n_out: int = 1):
    with watch() as w:
        model = BagOfWords(n_out=n_out)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in list(batches(IDS, SCORE, size=128))[:steps]:
            loss = loss_of(model, model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w


def test_hand_written_squared_error_on_a_healthy_run_is_read_and_healthy():
    w = _train_bag(lambda model, out, y: ((out.squeeze(-1) - y) ** 2).mean())
    ls, p = w.watcher.s.loss, w.watcher.s.preds
    assert (ls.fn, ls.source, ls.family, ls.calls) == ("mse_loss", "graph", "regression", 60)
    assert ls.input_shape == ls.target_shape == (128,)
    assert abs(p.target_mean - float(SCORE[:60 * 128].mean())) < 1e-3  # the targets recovered exactly
    assert p.spread.last > 0.5
    assert w.diagnosis.verdict == "healthy", w.diagnosis.findings


def test_broadcasting_hand_written_squared_error_is_a_shape_mismatch_at_the_subtraction():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in batches(IDS, SCORE, size=128):
            pred = model(x)  # (128, 1)
            loss = ((pred - y) ** 2).mean()  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    d = w.diagnosis
    f = find(d, "L001")
    assert f is not None, d.findings
    assert f.evidence["input_shape"] == [128, 1] and f.evidence["target_shape"] == [128]
    assert f.message.startswith("The hand-written loss (computed like mse_loss)")
    assert_where(f, test_broadcasting_hand_written_squared_error_is_a_shape_mismatch_at_the_subtraction)
    assert d.verdict == "flatlined" and d.findings[0].code == "L001" and "S001" in d.findings[0].symptoms


def test_broadcast_inside_a_helper_function_points_at_its_subtraction():
    with watch() as w:
        model = BagOfWords()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for x, y in list(batches(IDS, SCORE, size=128))[:10]:
            loss = squared_error(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "L001")
    assert f is not None, w.diagnosis.findings
    assert_where(f, squared_error)


def test_hand_written_l1_is_read_as_l1():
    w = _train_bag(lambda model, out, y: torch.mean(torch.abs(out.squeeze(-1) - y)))
    ls = w.watcher.s.loss
    assert (ls.fn, ls.source) == ("l1_loss", "graph")
    assert ls.baseline == pytest.approx(float((SCORE - SCORE.mean()).abs().mean()), rel=0.05)
    assert ls.values.last < 0.5 * ls.baseline
    assert w.diagnosis.verdict == "healthy", w.diagnosis.findings


def test_auxiliary_weight_penalty_still_finds_the_main_term():
    def loss_of(model, out, y):
        l2 = sum(p.pow(2).sum() for p in model.parameters())
        return ((out.squeeze(-1) - y) ** 2).mean() + 1e-4 * l2

    w = _train_bag(loss_of)
    ls = w.watcher.s.loss
    assert (ls.fn, ls.input_shape, ls.target_shape) == ("mse_loss", (128,), (128,))
    assert ls.scale_factor > 1.0  # the backward value holds the penalty; the series holds the squared error
    assert w.diagnosis.verdict == "healthy", w.diagnosis.findings


def _imbalanced(n: int = 1280) -> tuple[torch.Tensor, torch.Tensor]:
    """As test_l004: ~20% positives, only nudged by feature 0: unweighted cross-entropy answers the majority."""
    g = torch.Generator().manual_seed(14)
    x = torch.randn(n, 8, generator=g)
    return x, (torch.rand(n, generator=g) < torch.sigmoid(0.5 * x[:, 0] - 1.6)).long()


def test_hand_written_cross_entropy_by_gather_collapses_to_the_majority():
    x, labels = _imbalanced()
    with watch() as w:
        model = nn.Linear(8, 2)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
        for xb, yb in batches(x, labels, size=32):
            loss = -F.log_softmax(model(xb), dim=-1).gather(1, yb[:, None]).mean()  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    ls = w.watcher.s.loss
    assert (ls.fn, ls.source, ls.input_shape, ls.target_shape) == ("cross_entropy", "graph", (32, 2), (32,))
    assert sum(w.watcher.s.preds.label_counts.values()) == 1280
    f = find(w.diagnosis, "L004")
    assert f is not None, w.diagnosis.findings
    assert f.evidence["majority_prediction_share"] >= 0.9
    assert_where(f, test_hand_written_cross_entropy_by_gather_collapses_to_the_majority)


def test_hand_written_cross_entropy_by_index_collapses_to_the_majority():
    x, labels = _imbalanced()
    with watch() as w:
        model = nn.Linear(8, 2)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
        for xb, yb in batches(x, labels, size=32):
            logp = torch.log_softmax(model(xb), dim=-1)
            loss = -logp[torch.arange(len(yb)), yb].mean()  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert w.watcher.s.loss.fn == "cross_entropy"
    f = find(w.diagnosis, "L004")
    assert f is not None, w.diagnosis.findings
    assert_where(f, test_hand_written_cross_entropy_by_index_collapses_to_the_majority)


ROWS = sentences(256, seed=21)


@pytest.mark.parametrize("planted", [False, True])
def test_head_outside_the_model_on_a_picked_hidden_state(tiny_model_dir, planted):
    from transformers import AutoModel

    with watch() as w:
        encoder = AutoModel.from_pretrained(str(tiny_model_dir), output_hidden_states=True).train()
        head = nn.Linear(encoder.config.hidden_size, 1)
        opt = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=1e-3)
        for i in range(0, len(ROWS), 16):
            enc, y = encode(tiny_model_dir, ROWS[i:i + 16])
            hidden = encoder(**enc).hidden_states[-2].mean(1)  # the script picks a layer and pools it
            pred = head(hidden) if planted else head(hidden).squeeze(-1)
            loss = ((pred - y) ** 2).mean()  # planted
            opt.zero_grad()
            loss.backward()
            opt.step()
    ls, d = w.watcher.s.loss, w.diagnosis
    assert (ls.fn, ls.source, ls.calls) == ("mse_loss", "graph", 16)
    if planted:
        f = find(d, "L001")
        assert f is not None and f.evidence["input_shape"] == [16, 1], d.findings
        assert_where(f, test_head_outside_the_model_on_a_picked_hidden_state)
    else:
        assert ls.input_shape == ls.target_shape == (16,)
        assert find(d, "L001") is None and d.verdict == "healthy", d.findings


def test_an_unreadable_loss_says_what_it_was_made_of():
    w = _train_bag(lambda model, out, y: ((out.squeeze(-1) - y) ** 4).mean(), steps=5)
    assert w.watcher.s.loss is None
    seen = w.to_dict()["observed"]
    assert seen["optimizer_steps"] == 5 and "PowBackward0" in seen["unread_loss"]
    assert w.diagnosis.verdict == "inconclusive" and not w.diagnosis.findings  # no cause invented


def test_read_loss_recovers_targets_and_shapes_of_each_formula():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([0, 2, 1, 1, 0, 2])
    soft = F.one_hot(y, 3).float()
    with watch():
        logits = lin(x)
        cases = {
            "cross_entropy": -(soft * torch.log(torch.softmax(logits, -1))).sum(-1).mean(),
            "binary_cross_entropy": -(soft * torch.log(torch.sigmoid(logits))
                                      + (1 - soft) * torch.log(1 - torch.sigmoid(logits))).mean(),
            "binary_cross_entropy_with_logits": -(soft * F.logsigmoid(logits)
                                                  + (1 - soft) * F.logsigmoid(-logits)).mean(),
        }
        for fn, loss in cases.items():
            found, _ = read_loss(loss)
            assert found is not None and found.fn == fn, (fn, found)
            assert torch.equal(found.target, soft)
        logp = F.log_softmax(lin(x), -1).gather(1, y[:, None]).squeeze(1)
        found, _ = read_loss((-(1 - logp.exp()) ** 2 * logp).mean())  # focal loss, gamma 2
        assert found.fn == "cross_entropy" and torch.equal(found.target, y)
        assert torch.allclose(found.value, F.cross_entropy(lin(x), y))
        score, weight = torch.randn(6), torch.rand(6)
        found, _ = read_loss(((score - lin(x)[:, 1]) ** 2).mean())  # target first, a column picked
        assert found.fn == "mse_loss" and torch.allclose(found.target, score, atol=1e-6)
        assert torch.allclose(found.value, F.mse_loss(lin(x)[:, 1], score))
        found, _ = read_loss((weight * (lin(x)[:, 1] - score) ** 2).sum() / weight.sum())  # weighted
        assert found.fn == "mse_loss" and torch.allclose(found.target, score, atol=1e-6)


def test_logits_of_a_model_output_are_read_on_every_step():
    """The head inside a Hugging Face model is hooked only until the first step (the hooks then narrow to
    the outermost call), so the logits in the ModelOutput it returns must carry the mark themselves."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=int(IDS.max()) + 1, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=1)
    with watch() as w:
        model = BertForSequenceClassification(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for x, y in list(batches(IDS, SCORE, size=32))[:12]:
            logits = model(input_ids=x).logits
            loss = ((logits.squeeze(-1) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    ls = w.watcher.s.loss
    assert (ls.fn, ls.source, ls.calls) == ("mse_loss", "graph", 12)
    assert w.watcher.s.preds.n_seen == 12 * 32
