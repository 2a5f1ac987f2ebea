"""Every probe puts the model, its gradients and modes, the optimizer and the RNGs back, bit for bit."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import BertRegressor, encode, tokenizer
from probing import ROWS

import defib


def _state(model, opt):
    return {
        "params": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "opt": copy.deepcopy(opt.state_dict()),
        "torch_rng": torch.get_rng_state(),
        "py_rng": random.getstate(),
        "np_rng": np.random.get_state()[1].copy(),
    }


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def _setup(model_dir):
    """A model mid-training: Adam state present, grads present, one frozen tensor, mixed modes."""
    model = BertRegressor(model_dir)
    model.encoder.embeddings.position_embeddings.weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    enc, y = encode(model_dir, ROWS[:8])
    F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y).backward()
    opt.step()
    F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y).backward()  # grads left in place
    model.train()
    model.encoder.encoder.layer[0].eval()
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    return model, opt


@pytest.mark.parametrize("with_optimizer", [True, False])
def test_probe_restores_everything(tiny_model_dir, with_optimizer):
    model, opt = _setup(tiny_model_dir)
    before = _state(model, opt)
    d = defib.probe(model, tokenizer(str(tiny_model_dir)), [t for t, _ in ROWS], labels=[y for _, y in ROWS],
                    optimizer=opt if with_optimizer else None)
    assert d.extra["probe"]["overfit"]["steps"] > 0 and d.extra["probe"]["lr_range"]["lrs"]  # it really trained
    after = _state(model, opt)
    for key in before:
        assert _same(before[key], after[key]), key


def test_a_probe_that_fails_midway_still_restores(tiny_model_dir):
    model, opt = _setup(tiny_model_dir)
    before = _state(model, opt)
    calls = {"n": 0}

    def flaky_loss(pred, y):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("boom")
        return F.mse_loss(pred, y)

    d = defib.probe(model, tokenizer(str(tiny_model_dir)), [t for t, _ in ROWS], labels=[y for _, y in ROWS],
                    optimizer=opt, loss_fn=flaky_loss)
    assert "boom" in " ".join(d.extra["probe"]["errors"].values())
    after = _state(model, opt)
    for key in before:
        assert _same(before[key], after[key]), key


def test_a_tokenized_batch_with_labels_is_probed(tiny_model_dir):
    """``defib.probe`` also takes what a DataLoader yields: a dict with input_ids, attention_mask and labels."""
    enc = tokenizer(str(tiny_model_dir))([t for t, _ in ROWS[:16]], padding=True, return_tensors="pt")
    batch = {**enc, "labels": torch.tensor([y for _, y in ROWS[:16]])}
    d = defib.probe(BertRegressor(tiny_model_dir), None, batch)
    assert d.task == "regression" and d.extra["probe"]["rows"] == 16
    assert d.extra["probe"]["initial"]["loss"] > 0 and not d.extra["probe"]["errors"]


def test_the_comparison_sees_a_one_ulp_change(tiny_model_dir):
    """The restore tests can fail: one weight nudged by one float step, or one RNG draw, shows."""
    model, opt = _setup(tiny_model_dir)
    before = _state(model, opt)
    with torch.no_grad():
        w = model.head.weight
        w[0, 0] = torch.nextafter(w[0, 0], torch.tensor(float("inf")))
    assert not _same(before["params"], _state(model, opt)["params"])
    torch.rand(1)
    assert not _same(before["torch_rng"], _state(model, opt)["torch_rng"])
