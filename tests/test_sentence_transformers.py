"""sentence-transformers training watched by defib: its losses' scores and labels seen, its collapse modes named.

A tiny SentenceTransformer (the tiny BERT + mean pooling) trained for real on word-overlap pairs: the
label is the share of words the second text keeps from the first, which mean pooling learns in a few
dozen steps. The loops call the losses as ``SentenceTransformerTrainer.compute_loss`` does,
``loss(features, labels)``; the Trainer itself needs the ``datasets`` package (its test is skipped
without it). Planted: STS-style 0-5 labels fed to ``CosineSimilarityLoss``, whose cosine cannot reach
them. Near-misses: the same labels in [0, 1]; 0-5 labels fed to CoSENT, which uses only their order.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn
from rules.helpers import assert_where, find, watch

pytest.importorskip("sentence_transformers")
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.base.modules import Transformer  # noqa: E402
from sentence_transformers.sentence_transformer import losses  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Pooling  # noqa: E402

STEPS = 60  # past the flatline rule's grace period (30 steps) and its plateau window (20)
BATCH = 16
WORDS = "red blue green cat dog bird house tree river stone car road city king queen music night sun moon rain".split()


def pairs(n: int, scale: float = 1.0, seed: int = 0) -> list[tuple[str, str, float]]:
    """(text, text with some words replaced, ``scale`` x the share of words kept)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a = [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]
        p = rng.random()
        b = [w if rng.random() > p else rng.choice(WORDS) for w in a]
        rows.append((" ".join(a), " ".join(b), scale * sum(x == y for x, y in zip(a, b)) / len(a)))
    return rows


def bi_encoder(model_dir) -> SentenceTransformer:
    torch.manual_seed(0)
    encoder = Transformer(str(model_dir), max_seq_length=32)
    return SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), "mean")], device="cpu")


def train(model, loss_fn, rows, lr=1e-3, steps=STEPS):
    """The Trainer's step: ``loss(features, labels)``, backward, step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        batch = rows[step * BATCH:(step + 1) * BATCH]
        features = [model.preprocess([r[0] for r in batch]), model.preprocess([r[1] for r in batch])]
        loss = loss_fn(features, torch.tensor([r[2] for r in batch]))
        loss.backward()
        opt.step()
        opt.zero_grad()


def test_cosine_similarity_loss_on_unit_labels_is_healthy(tiny_model_dir):
    model = bi_encoder(tiny_model_dir)
    with watch() as w:
        train(model, losses.CosineSimilarityLoss(model), pairs(STEPS * BATCH))
    d, s = w.diagnosis, w.watcher.s
    assert s.loss.fn == "mse_loss" and s.loss.bounded_input == ("cosine similarity", -1.0, 1.0)
    assert s.model.name == "SentenceTransformer" and s.data.batches >= STEPS  # the model call inside the loss
    assert s.preds.target_max <= 1.0 and s.model.embedding_cosine.last < 0.9
    assert d.verdict == "healthy" and not d.findings, [(f.code, f.message) for f in d.findings]


def test_cosine_similarity_loss_on_0_to_5_labels_names_the_cosine_range(tiny_model_dir):
    model = bi_encoder(tiny_model_dir)
    with watch() as w:
        loss_fn = losses.CosineSimilarityLoss(model)  # planted
        train(model, loss_fn, pairs(STEPS * BATCH, scale=5.0))
    d = w.diagnosis
    f = d.findings[0]
    assert f.code == "M003" and f.cause == "model.output_range", [(g.code, g.message) for g in d.findings]
    assert f.evidence["activation"] == "cosine similarity" and f.evidence["range"] == [-1.0, 1.0]
    assert f.evidence["target_range"][1] == 5.0 and f.evidence["targets_outside"] > 0.5
    assert (f.evidence["bound_of"], f.evidence["loss_fn"]) == ("loss", "mse_loss")  # the fix scales the labels there
    assert_where(f, test_cosine_similarity_loss_on_0_to_5_labels_names_the_cosine_range)
    flat = find(d, "S001")
    if flat is not None:  # the collapse the range causes: every text's embedding alike
        assert flat.evidence["embedding_cosine"] > 0.9


def test_the_range_fix_scales_the_labels_cosine_similarity_loss_compares(tiny_model_dir):
    """The confirmation rerun of the planted run above: the fix maps the 0-5 labels onto 0..1 where the loss
    module's MSE receives them, and the range finding is gone."""
    from defib.fixes import build, plan

    evidence = {"activation": "cosine similarity", "range": [-1.0, 1.0], "target_range": [0.0, 5.0],
                "bound_of": "loss", "loss_fn": "mse_loss"}
    model = bi_encoder(tiny_model_dir)
    with watch() as w:
        w.watcher.fix = build(plan({"cause": "model.output_range", "evidence": evidence}))
        train(model, losses.CosineSimilarityLoss(model), pairs(STEPS * BATCH, scale=5.0))
    assert 0.5 < w.watcher.s.preds.target_max <= 1.0
    assert find(w.diagnosis, "M003") is None, [(f.code, f.message) for f in w.diagnosis.findings]


def test_cosent_on_0_to_5_labels_is_read_without_a_range_finding(tiny_model_dir):
    """CoSENT compares only the labels' order: 0-5 labels are no fault, and its scores are seen.

    (The tiny model does not learn under CoSENT in a few dozen steps, so this run is short and
    asserts what defib reads, not a healthy verdict.)
    """
    model = bi_encoder(tiny_model_dir)
    with watch() as w:
        train(model, losses.CoSENTLoss(model), pairs(12 * BATCH, scale=5.0), steps=12)
    d, s = w.diagnosis, w.watcher.s
    assert s.loss.fn == "CoSENTLoss" and s.loss.source == "library" and s.loss.bounded_input is None
    assert s.preds.n_seen == 12 * BATCH and s.preds.target_max == pytest.approx(1.0)  # on the scores' scale
    assert s.optim.unread_loss == [] and s.model.embedding_cosine.last is not None
    # equal scores lose log(1 + the pairs the labels order): about log(1 + 120) for 16 distinct labels
    assert 3.5 < s.loss.baseline < math.log1p(120) + 1e-6
    assert find(d, "M003") is None and find(d, "D008") is None


def test_angle_and_in_batch_negatives_losses_are_read(tiny_model_dir):
    model = bi_encoder(tiny_model_dir)
    rows = pairs(STEPS * BATCH)
    with watch() as w:
        train(model, losses.AnglELoss(model), rows, steps=4)
    assert w.watcher.s.loss.fn == "AnglELoss" and w.watcher.s.preds.n_seen == 4 * BATCH
    with watch() as w:
        train(model, losses.MultipleNegativesRankingLoss(model), rows, steps=12)
    s = w.watcher.s
    assert s.loss.fn == "MultipleNegativesRankingLoss" and s.preds.n_seen == 12 * BATCH
    assert s.preds.target_std is None  # in-batch negatives take no labels
    assert s.loss.baseline == pytest.approx(math.log(BATCH))  # one positive among the batch's candidates


def _cross_encoder(model_dir, label):
    """The CrossEncoderTrainer's step (loss(columns, labels)) on a CrossEncoder(num_labels=1); ``label`` maps
    a pair's 0..1 similarity to its training label."""
    from sentence_transformers.cross_encoder import CrossEncoder
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    torch.manual_seed(0)
    model = CrossEncoder(str(model_dir), num_labels=1, max_length=48, device="cpu")
    loss_fn = BinaryCrossEntropyLoss(model)
    rows = pairs(STEPS * BATCH)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with watch() as w:
        model.train()
        for step in range(STEPS):
            batch = rows[step * BATCH:(step + 1) * BATCH]
            loss = loss_fn([[r[0] for r in batch], [r[1] for r in batch]], torch.tensor([label(r[2]) for r in batch]))
            loss.backward()
            opt.step()
            opt.zero_grad()
    return w


def test_cross_encoder_bce_is_read_and_healthy(tiny_model_dir):
    w = _cross_encoder(tiny_model_dir, lambda sim: float(sim > 0.5))
    d, s = w.diagnosis, w.watcher.s
    assert s.loss.fn == "binary_cross_entropy_with_logits" and s.preds.n_seen == STEPS * BATCH
    assert s.model.name == "CrossEncoder" and s.data.batches >= STEPS
    assert d.verdict == "healthy", [(f.code, f.message) for f in d.findings]


def test_cross_encoder_on_0_to_5_scores_is_the_sigmoids_range(tiny_model_dir):
    """The CrossEncoder's BCE on raw 0-5 scores: its sigmoid cannot reach them (M003), not a class-id error."""
    d = _cross_encoder(tiny_model_dir, lambda sim: 5 * sim).diagnosis
    causes = [f for f in d.findings if f.cause]
    assert causes and causes[0].code == "M003", [(f.code, f.message) for f in d.findings]
    assert (causes[0].evidence["bound_of"], causes[0].evidence["loss_fn"]) == ("loss", "binary_cross_entropy_with_logits")
    assert find(d, "D007") is None and find(d, "L002") is None



def test_the_line_that_built_the_examples_is_where_their_labels_come_from():
    """``InputExample(label=...)`` on one line is the labels' line (the loss compares them inside the library);
    train and dev examples built on two lines leave it unknown."""
    from sentence_transformers import InputExample

    rows = pairs(8)
    with watch() as w:
        train = [InputExample(texts=[a, b], label=5 * s) for a, b, s in rows]  # planted
    where = w.watcher.sentence.examples_where()
    assert len(train) == 8 and where is not None and where.code.endswith("# planted")
    with watch() as w:
        train = [InputExample(texts=[a, b], label=s) for a, b, s in rows]
        dev = [InputExample(texts=[a, b], label=s) for a, b, s in rows]
    assert len(dev) == len(train) and w.watcher.sentence.examples_where() is None

def test_in_batch_negatives_collapse_is_a_flatline(tiny_model_dir):
    """MNRL takes no labels: its flatline is every text's embedding alike and the loss at log(candidates)."""
    model = bi_encoder(tiny_model_dir)
    with watch() as w:
        train(model, losses.MultipleNegativesRankingLoss(model), pairs(STEPS * BATCH), lr=0.3)  # a step far too large
    d = w.diagnosis
    assert d.verdict == "flatlined" and d.findings[0].code == "O001", [(f.code, f.message) for f in d.findings]
    flat = find(d, "S001")
    assert flat.evidence["embedding_cosine"] > 0.95 and flat.evidence["target_std"] is None
    assert flat.evidence["baseline_loss"] == pytest.approx(math.log(BATCH), rel=1e-4)
    assert flat.evidence["loss"] >= 0.9 * math.log(BATCH) and "embeddings of different texts" in flat.message


def test_in_batch_negatives_learning_from_near_the_baseline_is_healthy(tiny_model_dir):
    """Near-miss: the tiny model starts within 10% of log(candidates), its embeddings alike (cosine ~0.87), and learns."""
    model = bi_encoder(tiny_model_dir)
    with watch() as w:
        train(model, losses.MultipleNegativesRankingLoss(model), pairs(STEPS * BATCH))
    d, s = w.diagnosis, w.watcher.s
    losses_seen = s.preds.loss_window.pairs()
    assert losses_seen[0][1] >= 0.9 * math.log(BATCH) > losses_seen[-1][1]
    assert d.verdict == "healthy" and not d.findings, [(f.code, f.message) for f in d.findings]


class EmbeddingLayerCLS(nn.Module):
    """A custom pooling that reads [CLS] from the embedding layer's output: the same vector for every text."""

    def forward(self, features):
        features["sentence_embedding"] = features["all_layer_embeddings"][0][:, 0]  # planted
        return features


CLS_LAYER = 0  # the embedding layer's output: chosen here, read three hops away


class LayerCLS(nn.Module):
    """[CLS] of the hidden layer it is built with."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, features):
        return {**features, "sentence_embedding": features["all_layer_embeddings"][self.layer][:, 0]}


def test_a_pooling_layer_chosen_elsewhere_points_at_the_choice(tiny_model_dir):
    """The layer index is a module constant passed to the pooling's constructor: ``where`` is the constant's line."""
    torch.manual_seed(0)
    encoder = Transformer(str(tiny_model_dir), max_seq_length=32, config_kwargs={"output_hidden_states": True})
    model = SentenceTransformer(modules=[encoder, LayerCLS(CLS_LAYER)], device="cpu")
    with watch() as w:
        train(model, losses.CosineSimilarityLoss(model), pairs(STEPS * BATCH))
    f = find(w.diagnosis, "M004")
    assert f is not None, [(g.code, g.message) for g in w.diagnosis.findings]
    assert f.where is not None and f.where.code.startswith("CLS_LAYER = 0"), f.where


def test_custom_pooling_reading_a_constant_names_the_pooling(tiny_model_dir):
    torch.manual_seed(0)
    encoder = Transformer(str(tiny_model_dir), max_seq_length=32, config_kwargs={"output_hidden_states": True})
    model = SentenceTransformer(modules=[encoder, EmbeddingLayerCLS()], device="cpu")
    with watch() as w:
        train(model, losses.CosineSimilarityLoss(model), pairs(STEPS * BATCH))
    d = w.diagnosis
    f = d.findings[0]
    assert f.code == "M004" and f.cause == "model.pooling", [(g.code, g.message) for g in d.findings]
    assert f.evidence["head_input_spread"] < 0.01 < f.evidence["token_spread"]
    assert_where(f, EmbeddingLayerCLS)
