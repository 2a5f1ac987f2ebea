"""What watching costs the run: no host reads between sampled steps, bounded memory, hooks on few modules.

A GPU is not needed to test the first: every way Python reads a tensor's
value on the host (``float(t)``, ``bool(t)``, ``.item()``, ``.tolist()``,
``.cpu()``, ``.numpy()``) is a method of ``torch.Tensor``, so wrapping those
methods sees each one, and the stack says whether defib's code made it. On a
GPU each of them would stall the device; here they are counted.
"""

from __future__ import annotations

import copy
import functools
import pickle
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.optim.optimizer import register_optimizer_step_pre_hook
from transformers import BertConfig, BertModel

import defib

DEFIB_SRC = str(Path(defib.__file__).parent)
HOST_READS = ("__float__", "__int__", "__bool__", "__index__", "item", "tolist", "cpu", "numpy")


class HostReads:
    """While active, counts the host reads of tensor values that defib's own code makes."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._saved: dict[str, object] = {}

    def __enter__(self) -> "HostReads":
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = torch.Tensor.__dict__.get(name)
            setattr(torch.Tensor, name, self._counting(name, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, saved in self._saved.items():
            if saved is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, saved)

    def _counting(self, name: str, original):
        @functools.wraps(original)
        def read(*args, **kwargs):
            frame = sys._getframe(1)
            while frame is not None and "/torch/" in frame.f_code.co_filename:
                frame = frame.f_back
            if frame is not None and frame.f_code.co_filename.startswith(DEFIB_SRC):
                self.calls.append(f"{name} at {Path(frame.f_code.co_filename).name}:{frame.f_lineno}")
            return original(*args, **kwargs)
        return read


class Model(nn.Module):
    def __init__(self, hidden: int = 32, layers: int = 2, intermediate: int = 64, n_out: int = 1):
        super().__init__()
        cfg = BertConfig(vocab_size=200, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=intermediate, max_position_embeddings=32)
        self.encoder = BertModel(cfg)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, 0]).squeeze(-1)


def batches(n: int, classes: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(5, 200, (4, 12), generator=gen)
        mask = torch.ones_like(ids)
        ids[:2, 9:], mask[:2, 9:] = 0, 0  # padded rows, as a tokenizer pads
        y = torch.randint(0, classes, (4,), generator=gen) if classes else torch.rand(4, generator=gen) * 5
        out.append((ids, mask, y))
    return out


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_no_host_reads_between_sampled_steps(task: str) -> None:
    torch.manual_seed(0)
    classes = 3 if task == "classification" else 0
    model = Model(n_out=classes or 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    counted = HostReads()
    with defib.watch(model, opt, announce=None) as w:
        for step, (ids, mask, y) in enumerate(batches(9, classes), 1):
            # steps 1-3 are sampled and evaluated, 10 would be again: 4-9 must read nothing
            mode = counted if step >= 4 else None
            if mode is not None:
                mode.__enter__()
            try:
                out = model(ids, mask)
                loss = F.cross_entropy(out, y) if classes else F.mse_loss(out, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            finally:
                if mode is not None:
                    mode.__exit__(None, None, None)
    assert counted.calls == []
    # the values put off were read in the end: every step's loss is in the series
    assert [s for s, _ in w.watcher.s.loss.values.pairs()] == list(range(1, 10))
    assert w.watcher.s.preds.n_seen == 36


def test_defib_reads_values_on_a_sampled_step() -> None:
    """The near-miss of the test above: the counting sees defib's reads when there are some."""
    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    counted = HostReads()
    with defib.watch(model, opt, announce=None):
        ids, mask, y = batches(1)[0]
        with counted:
            F.mse_loss(model(ids, mask), y).backward()
            opt.step()  # step 1: sampled
    assert counted.calls


def _copies(snap: dict) -> list[torch.Tensor]:
    """The values before the step that each update measure holds (its last argument: a tensor, or LoRA's (A, B))."""
    return [t for measure in snap.values()
            for t in (measure.args[-1] if isinstance(measure.args[-1], tuple) else (measure.args[-1],))]


def test_update_snapshot_memory_is_bounded() -> None:
    """The copies defib holds to measure updates are a small fixed share of the weights, not a copy of them."""
    torch.manual_seed(0)
    model = Model(hidden=512, layers=2, intermediate=2048)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    held: list[int] = []
    with defib.watch(model, opt, announce=None) as w:
        snap = w.watcher.optim._snap
        # runs after defib's own pre-step hook (registered first), when the copies exist
        handle = register_optimizer_step_pre_hook(
            lambda o, a, k: held.append(sum(t.numel() * t.element_size() for t in _copies(snap))))
        try:
            for ids, mask, y in batches(2):
                F.mse_loss(model(ids, mask), y).backward()
                opt.step()
                opt.zero_grad()
        finally:
            handle.remove()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert held and max(held) > 0
    assert max(held) < 0.05 * weights
    assert w.watcher.s.optim.update_ratio  # and the update is still measured


def test_forward_hooks_narrow_to_the_models_after_a_step() -> None:
    model = Model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    with defib.watch(model, opt, announce=None) as w:
        assert module_hooks._global_forward_hooks  # before the first step: every module, to find the models
        ids, mask, y = batches(1)[0]
        F.mse_loss(model(ids, mask), y).backward()
        opt.step()
        assert not module_hooks._global_forward_hooks and not module_hooks._global_forward_pre_hooks
        assert model._forward_hooks and model.encoder._forward_hooks  # the outermost call and the encoder
        assert not model.encoder.encoder.layer[0]._forward_hooks
        BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=16))  # a model built later: every module again until a step
        assert module_hooks._global_forward_hooks
        for _ in range(3):  # steps 2-3 still see the batches through the narrowed hooks
            F.mse_loss(model(ids, mask), y).backward()
            opt.step()
    assert w.watcher.s.data.batches == 4
    assert not module_hooks._global_forward_hooks and not model._forward_hooks and not model.encoder._forward_hooks


def test_copies_and_pickles_of_a_watched_model_leave_defib_behind() -> None:
    """An EMA copy shares the hooks instead of copying the watcher; a pickled model loads without defib."""
    model = Model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    with defib.watch(model, opt, announce=None) as w:
        ids, mask, y = batches(1)[0]
        F.mse_loss(model(ids, mask), y).backward()
        opt.step()
        twin = copy.deepcopy(model)
        hook = next(iter(twin._forward_hooks.values()))
        assert hook is next(iter(model._forward_hooks.values()))
        loaded = pickle.loads(pickle.dumps(model))
    assert loaded(ids, mask).shape == (4,)
    assert w.watcher.s.step == 1
