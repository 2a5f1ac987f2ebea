"""The probes' measurements against answers known in advance, on the tiny BERT."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import BertRegressor
from probing import PERMUTATION_BUDGET, MeanEmbedding, ROWS, Detached, NoMask, probe, shuffled_labels, word_rows


def test_zero_head_initial_cross_entropy_is_ln_k(tiny_model_dir):
    model = BertRegressor(tiny_model_dir, n_out=3)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    rows = [(t, i % 3) for i, (t, _) in enumerate(ROWS)]
    sig, _ = probe(model, tiny_model_dir, rows, only=("initial",))
    assert sig.task == "classification"
    assert sig.initial.loss == pytest.approx(math.log(3), abs=1e-6)
    assert sig.initial.reference == pytest.approx(math.log(3))


def test_zero_head_initial_mse_is_mean_square_of_targets(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    sig, _ = probe(model, tiny_model_dir, only=("initial",))
    y = torch.tensor([y for _, y in ROWS])
    assert sig.task == "regression"
    assert sig.initial.loss == pytest.approx(float((y ** 2).mean()), rel=1e-6)
    assert sig.initial.baseline == pytest.approx(float(y.var(unbiased=False)), rel=1e-6)


def test_frozen_encoder_gets_no_gradient(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    model.encoder.requires_grad_(False)
    sig, _ = probe(model, tiny_model_dir, only=("grads",))
    encoder = {n for n, _ in model.named_parameters() if n.startswith("encoder.")}
    assert set(sig.grads.frozen) == encoder
    assert list(sig.grads.norms) == ["head"] and sig.grads.norms["head"] > 0


def test_detached_pooled_vector_leaves_encoder_grads_none(tiny_model_dir):
    sig, _ = probe(Detached(tiny_model_dir), tiny_model_dir, only=("grads",))
    assert {n for n in sig.grads.no_grad if n.startswith("encoder.encoder.layer.")}
    assert not any(g.startswith("layer.") or g == "embeddings" for g in sig.grads.norms)
    assert sig.grads.norms["head"] > 0


def test_healthy_gradients_reach_every_layer(tiny_model_dir):
    sig, _ = probe(BertRegressor(tiny_model_dir), tiny_model_dir, only=("grads",))
    assert {"embeddings", "layer.0", "layer.1", "head"} <= set(sig.grads.norms)
    assert all(v > 0 for v in sig.grads.norms.values())


def test_overfit_one_batch_succeeds_when_healthy_and_fails_at_lr_zero(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    sig, _ = probe(model, tiny_model_dir, only=("overfit",), optimizer=torch.optim.AdamW(model.parameters(), lr=2e-3))
    assert sig.overfit.reached_at is not None and sig.overfit.losses[-1] < sig.overfit.losses[0]
    sig, _ = probe(model, tiny_model_dir, only=("overfit",), optimizer=torch.optim.AdamW(model.parameters(), lr=0.0))
    assert sig.overfit.reached_at is None and sig.overfit.steps == sig.overfit.max_steps
    assert sig.overfit.losses[-1] == pytest.approx(sig.overfit.losses[0])


def test_lr_sweep_falls_then_runs_away(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    sig, _ = probe(model, tiny_model_dir, only=("lr_range",), optimizer=torch.optim.SGD(model.parameters(), lr=1e-3))
    r = sig.lr_range
    assert r.optimizer == "SGD" and r.lrs == sorted(r.lrs) and len(r.lrs) == len(r.losses)
    assert min(r.losses) < 0.8 * r.losses[0]                      # it learned somewhere in the sweep
    assert r.diverged_lr is not None and r.diverged_lr > r.min_loss_lr  # and plain SGD ran away after that
    assert len(r.lrs) < 24                                        # where the sweep stopped early
    assert r.suggested_lr == pytest.approx(r.min_loss_lr / 10)


def test_mask_roll_moves_outputs_only_if_the_mask_is_used(tiny_model_dir):
    sig, _ = probe(BertRegressor(tiny_model_dir), tiny_model_dir, only=("sensitivity",))
    assert sig.sensitivity.mask_rows_changed >= 2 and sig.sensitivity.mask_effect > 0.01
    sig, _ = probe(NoMask(tiny_model_dir), tiny_model_dir, only=("sensitivity",))
    assert sig.sensitivity.mask_rows_changed >= 2 and sig.sensitivity.mask_effect == 0.0


def test_permutation_control_real_labels_beat_shuffled_on_a_learnable_task(tiny_model_dir):
    rows = word_rows(128, seed=0)
    sig, _ = probe(MeanEmbedding(), tiny_model_dir, rows, only=("permutation",),
                   budget=PERMUTATION_BUDGET)
    p = sig.permutation
    assert p.real_loss < 0.5 * p.baseline and p.real_loss < p.permuted_loss - 0.5 * p.baseline


def test_permutation_control_random_labels_beat_nothing(tiny_model_dir):
    rows = shuffled_labels(word_rows(128, seed=0), seed=0)
    sig, _ = probe(MeanEmbedding(), tiny_model_dir, rows, only=("permutation",),
                   budget=PERMUTATION_BUDGET)
    p = sig.permutation
    assert p.real_loss > 0.9 * p.baseline and p.real_loss > p.permuted_loss - 0.1 * p.baseline
