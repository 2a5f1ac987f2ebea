"""defib's ground rules, checked: it never changes the run, never stops it, stays small, and documents itself.

- Same seed, same losses, bit for bit, with and without defib (in a
  subprocess under ``defib run`` and in-process under ``defib.watch``).
- An exception inside defib (in a hook or in a rule) becomes an
  internal-error finding (X001); the training goes on, unchanged.
- Memory stays flat over a long run (tracemalloc + the sizes of every
  series, window and list the watcher keeps).
- The packaged causes list is the shared one; every rule has its docstring
  sections, a well-formed code and a known cause.
"""

from __future__ import annotations

import gc
import re
import sys
import time
import tracemalloc
import weakref
from collections import deque
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from support import run_defib, run_plain, tiny_script
from torch import nn

import defib
from defib.causes import CAUSES
from defib.diagnosis import INTERNAL_CODE
from defib.evidence.stats import Window
from defib.signals.common import Series
from defib.evidence.watch import Watcher
from defib.evidence.watch.data import DataEvidence
from defib.evidence.watch.loss import MAX_STEP_LOSSES, LossEvidence
from defib.evidence.watch.optim import OptimEvidence
from defib.rules.base import _REGISTRY, SECTIONS, Finding, Rule, Severity, all_rules, register

SHARED_CAUSES = Path(__file__).resolve().parents[2] / "shared" / "spec" / "causes.toml"


# ---------------------------------------------------------------- a tiny model
class TinyRegressor(nn.Module):
    """Embedding + mean pooling + linear head: token ids (B, T) in, one score per row out."""

    def __init__(self, vocab: int = 50, dim: int = 8):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, 1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(input_ids).mean(1)).squeeze(-1)  # (B, T, D) -> (B, D) -> (B,)


def _batches(n: int = 32, batch: int = 8, seq: int = 4, vocab: int = 50):
    """A fixed pool of (ids, target) batches; the target is learnable from the ids."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (n, batch, seq), generator=gen)
    return [(ids[i], ids[i].float().mean(1) / vocab * 4 - 2) for i in range(n)]


def _train_tiny(steps: int, *, watched: bool, sample_every: int = 10):
    """Train TinyRegressor with AdamW; return (losses, final parameters, watch or None)."""
    torch.manual_seed(0)
    model = TinyRegressor()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = _batches()
    losses: list[float] = []
    w = defib.watch(model, opt, announce=None, sample_every=sample_every) if watched else None
    if w is not None:
        w.start()
    try:
        for i in range(steps):
            ids, y = data[i % len(data)]
            loss = F.mse_loss(model(ids), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        if w is not None:
            w.stop()
    return losses, [p.detach().clone() for p in model.parameters()], w


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _internal_errors(diagnosis) -> list[str]:
    found = [f for f in diagnosis.findings if f.code == INTERNAL_CODE]
    assert len(found) == 1, [f.code for f in diagnosis.findings]
    return found[0].evidence["errors"]


# ---------------------------------------------------------------- same losses, bit for bit
def _loss_lines(stdout: str) -> list[str]:
    return re.findall(r"^step \d+ loss \S+$", stdout, re.M)


def test_defib_run_gives_the_same_losses_bit_for_bit(tiny_model_dir, tmp_path):
    cmd = tiny_script(tiny_model_dir, "--steps", "25", "--print-losses")
    plain = run_plain(tmp_path, cmd)
    watched = run_defib(tmp_path, command=cmd)
    assert plain.returncode == 0, plain
    assert watched.report is not None and watched.report["steps_observed"] == 25, watched
    plain_losses, watched_losses = _loss_lines(plain.stdout), _loss_lines(watched.stdout)
    assert len(plain_losses) == 25
    assert watched_losses == plain_losses  # float.hex: every bit of every loss


class _BertRegressor(nn.Module):
    def __init__(self, model_dir: Path):
        super().__init__()
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(model_dir)
        self.head = nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        return self.head(h[:, 0]).squeeze(-1)


def _train_bert(model_dir: Path, steps: int, *, watched: bool):
    """A real little fine-tuning loop (dropout, shuffling, tokenizer, scheduler) built inside the watch."""
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer

    words = ["good", "bad", "the", "movie", "plot", "great", "awful", "was"]
    rows = [(" ".join(words[(i * k) % 8] for k in range(1, 3 + i % 5)), float(i % 5)) for i in range(64)]
    w = defib.watch(announce=None) if watched else None
    if w is not None:
        w.start()
    try:
        torch.manual_seed(0)
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = _BertRegressor(model_dir)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 4))

        def collate(batch):
            texts, ys = zip(*batch)
            return tok(list(texts), padding=True, truncation=True, max_length=16, return_tensors="pt"), torch.tensor(ys)

        loader = DataLoader(rows, batch_size=8, shuffle=True, collate_fn=collate)
        losses: list[float] = []
        model.train()
        while len(losses) < steps:
            for enc, y in loader:
                loss = F.mse_loss(model(enc["input_ids"], enc["attention_mask"]), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                if len(losses) == steps:
                    break
    finally:
        if w is not None:
            w.stop()
    return losses, [p.detach().clone() for p in model.parameters()], w


def test_watch_gives_the_same_losses_bit_for_bit_in_process(tiny_model_dir):
    plain_losses, plain_params, _ = _train_bert(tiny_model_dir, 12, watched=False)
    losses, params, w = _train_bert(tiny_model_dir, 12, watched=True)
    assert w.diagnosis.steps == 12  # it really watched: every step, sampled steps included
    assert w.diagnosis.task == "regression"
    assert not [f for f in w.diagnosis.findings if f.code == INTERNAL_CODE], w.diagnosis.findings
    assert losses == plain_losses
    assert _same(params, plain_params)


def test_watch_puts_everything_back():
    originals = (F.mse_loss, torch.Tensor.backward, torch.optim.Optimizer.zero_grad, torch.optim.Optimizer.__init__,
                 torch.utils.data.DataLoader.__init__, torch.utils.data.DataLoader.__iter__)
    _train_tiny(3, watched=True)
    after = (F.mse_loss, torch.Tensor.backward, torch.optim.Optimizer.zero_grad, torch.optim.Optimizer.__init__,
             torch.utils.data.DataLoader.__init__, torch.utils.data.DataLoader.__iter__)
    assert after == originals
    from torch.nn.modules import module as module_hooks
    from torch.optim import optimizer as optimizer_hooks

    assert not module_hooks._global_forward_hooks and not module_hooks._global_forward_pre_hooks
    assert not optimizer_hooks._global_optimizer_pre_hooks and not optimizer_hooks._global_optimizer_post_hooks


# ---------------------------------------------------------------- defib's bugs never stop training
def _boom(*args, **kwargs):
    raise RuntimeError("planted defib bug")


@pytest.mark.parametrize("part, method", [(DataEvidence, "_check_batch"), (OptimEvidence, "_sample_grads"),
                                          (LossEvidence, "update_preds"), (LossEvidence, "_record_predictions")])
def test_exception_in_a_hook_never_stops_training(part, method, monkeypatch):
    plain_losses, plain_params, _ = _train_tiny(30, watched=False)
    monkeypatch.setattr(part, method, _boom)
    losses, params, w = _train_tiny(30, watched=True)
    assert losses == plain_losses  # training ran to the end, unchanged
    assert _same(params, plain_params)
    errors = _internal_errors(w.diagnosis)
    assert errors and all("RuntimeError: planted defib bug" in e for e in errors), errors
    assert w.diagnosis.steps == 30


@register
class _BrokenRule(Rule):
    """A rule whose check() always raises (test only; removed after each test).

    What it detects:
        Nothing: it raises.

    Why it flattens predictions:
        It does not.

    Example:
        ``raise ZeroDivisionError``

    Fix:
        None needed.
    """

    code = "X999"
    title = "broken on purpose"
    severity = Severity.ERROR

    def check(self, s) -> Finding | None:
        return 1 / 0


_REGISTRY.pop(_BrokenRule.code)  # registered only inside the test below


@pytest.fixture
def broken_rule():
    register(_BrokenRule)
    try:
        yield _BrokenRule
    finally:
        _REGISTRY.pop(_BrokenRule.code, None)


def test_exception_in_a_rule_is_reported_and_the_others_still_run(broken_rule):
    assert broken_rule.code in all_rules()
    plain_losses, _, _ = _train_tiny(200, watched=False)
    losses, _, w = _train_tiny(200, watched=True)
    assert losses == plain_losses
    d = w.diagnosis
    assert d.verdict in ("healthy", "at_risk", "flatlined")  # the diagnosis completed
    assert d.steps == 200
    errors = _internal_errors(d)
    assert any(e.startswith("rule X999: ZeroDivisionError") for e in errors), errors
    # the rule ran at every in-run evaluation (about 20 here): the report names the error, not 20 copies
    raw = w.watcher.s.internal_errors
    assert len(raw) == len(set(raw)), raw
    assert d.to_dict()["findings"][-1]["code"] == INTERNAL_CODE  # serialisable, listed after the real findings


# ---------------------------------------------------------------- bounded memory
_OPAQUE = (nn.Module, torch.Tensor, torch.optim.Optimizer, type, type(sys), type(len), type(lambda: 0))


def _walk(obj, path: str, seen: set, sizes: dict[str, int]) -> int:
    """Bytes of ``obj`` and what it holds (sys.getsizeof, shared objects once); lengths of its containers
    into ``sizes``. Models, tensors, optimizers, functions and classes are the user's, not defib's."""
    if id(obj) in seen or isinstance(obj, _OPAQUE):
        return 0
    seen.add(id(obj))
    total = sys.getsizeof(obj)
    if isinstance(obj, Series):
        sizes[path] = len(obj.steps)
    elif isinstance(obj, Window):
        sizes[path] = len(obj.buf)
    if isinstance(obj, (list, tuple, set, frozenset, deque)):
        sizes[path] = len(obj)
        items = list(obj)
        total += sum(_walk(v, f"{path}[{i}]" if i < 8 else path + "[]", seen, sizes) for i, v in enumerate(items))
    elif isinstance(obj, dict):
        sizes[path] = len(obj)
        total += sum(_walk(k, path + ".key", seen, sizes) + _walk(v, f"{path}.{k}", seen, sizes)
                     for k, v in list(obj.items()))
    elif hasattr(obj, "__dict__") and not isinstance(obj, weakref.ref):
        total += _walk(vars(obj), path, seen, sizes) - sys.getsizeof({})  # count the fields, not a second dict
    return total


def _watcher_state(w: Watcher) -> tuple[int, dict[str, int]]:
    """(bytes of Python objects the watcher holds, {path: length} of each container it holds)."""
    sizes: dict[str, int] = {}
    return _walk(w, "w", set(), sizes), sizes


# tracemalloc makes every allocation several times slower, so it traces the last TRACED_STEPS steps only:
# whatever those steps allocated and still hold is the growth rate that a run keeps after warm-up.
TRACED_STEPS = 2_000
TRACED_GROWTH_BOUND = 512 << 10  # bytes still alive from the traced steps (~330 KiB: bounded buffers refilling)
BLOCKS_GROWTH_BOUND = 20_000     # Python objects alive after the run beyond those alive after warm-up
STATE_GROWTH_BOUND = 256 << 10   # bytes the watcher's own state may add after warm-up (buffers cycle in size)
CONTAINER_BOUND = 4096           # no series, window or list the watcher keeps may hold more items than this


def _memory_run(warmup: int, total: int):
    """Train TinyRegressor ``total`` steps under defib.watch, measuring memory after warm-up and at the end."""
    torch.manual_seed(0)
    model = TinyRegressor()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    data = _batches()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster, and leaves the other cores alone
    m: dict = {}
    try:
        with defib.watch(model, opt, announce=None) as w:
            for i in range(total):
                if i == warmup:
                    gc.collect()
                    (m["bytes_warm"], m["sizes_warm"]), m["blocks_warm"] = _watcher_state(w.watcher), sys.getallocatedblocks()
                if i == total - TRACED_STEPS:
                    gc.collect()
                    tracemalloc.start()
                ids, y = data[i % len(data)]
                loss = F.mse_loss(model(ids), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            gc.collect()
            m["traced_growth"], _peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            (m["bytes_end"], m["sizes_end"]), m["blocks_end"] = _watcher_state(w.watcher), sys.getallocatedblocks()
    finally:
        torch.set_num_threads(threads)
        if tracemalloc.is_tracing():
            tracemalloc.stop()
    return w, m


def _check_memory(warmup: int, total: int) -> None:
    assert warmup > CONTAINER_BOUND and total - TRACED_STEPS >= warmup  # warm-up fills every bounded buffer
    started = time.perf_counter()
    w, m = _memory_run(warmup, total)
    seconds = time.perf_counter() - started
    assert w.diagnosis.steps == total
    assert not [f for f in w.diagnosis.findings if f.code == INTERNAL_CODE], w.diagnosis.findings
    warm, end = m["sizes_warm"], m["sizes_end"]
    too_big = {k: v for k, v in end.items() if v > CONTAINER_BOUND}
    assert not too_big, too_big
    # a Series is capped by construction and fills at the pace of sampling, which the watcher slows down
    # when a step is this cheap (Watcher._pace): it may still fill after warm-up without leaking
    grew = {k: (warm.get(k), v) for k, v in end.items() if v > max(2 * warm.get(k, 0), 64)
            and not (k.endswith((".steps", ".values")) and v <= Series().cap)}
    assert not grew, grew
    state = m["bytes_end"] - m["bytes_warm"]
    assert state < STATE_GROWTH_BOUND, f"the watcher holds {state} more bytes at step {total} than at {warmup}"
    blocks = m["blocks_end"] - m["blocks_warm"]
    assert blocks < BLOCKS_GROWTH_BOUND, f"{blocks} more Python objects alive at step {total} than at {warmup}"
    assert m["traced_growth"] < TRACED_GROWTH_BOUND, (
        f"the last {TRACED_STEPS} steps left {m['traced_growth']} bytes alive")
    print(f"\n{total} steps in {seconds:.1f} s; objects {m['blocks_warm']} -> {m['blocks_end']} "
          f"(step {warmup} -> {total}); last {TRACED_STEPS} steps left {m['traced_growth']} bytes; "
          f"watcher state {m['bytes_warm']} -> {m['bytes_end']} bytes, "
          f"{sum(warm.values())} -> {sum(end.values())} items")


def test_memory_stays_flat_short_run():
    """The quick version: 5k warm-up steps (past every buffer's cap), then 2k more, traced."""
    _check_memory(5_000, 7_000)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_memory_stays_flat_over_100k_steps():
    """After 100k steps memory is within the bounds above of memory after 10k steps."""
    _check_memory(10_000, 100_000)


def _loop_without_step(n: int):
    """A user's bug defib must survive as well as report: backward every batch, opt.step() never called."""
    torch.manual_seed(0)
    model = TinyRegressor()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    data = _batches()
    with defib.watch(model, opt, announce=None) as w:
        for i in range(n):
            ids, y = data[i % len(data)]
            loss = F.mse_loss(model(ids), y)
            opt.zero_grad()
            loss.backward()
    return w


def test_memory_bounded_when_no_optimizer_step_ever_comes():
    """Per-step accumulators are emptied at each optimizer step; without steps they must still stay bounded."""
    w = _loop_without_step(CONTAINER_BOUND + 300)
    assert w.diagnosis.steps == 0 and w.diagnosis.verdict == "at_risk"  # the bug is named (O011), not a shrug
    assert [f.code for f in w.diagnosis.causes] == ["O011"]
    _, sizes = _watcher_state(w.watcher)
    too_big = {k: v for k, v in sizes.items() if v > CONTAINER_BOUND}
    assert not too_big, too_big


def test_memory_bounded_when_a_hook_fails_every_step(monkeypatch):
    """A defib bug that aborts every step_pre (before it empties the per-step accumulators) must not leak."""
    monkeypatch.setattr(OptimEvidence, "_snapshot", _boom)
    _, _, w = _train_tiny(MAX_STEP_LOSSES + 200, watched=True)
    assert len(_internal_errors(w.diagnosis)) <= 20
    assert len(w.watcher.loss._step_losses) <= MAX_STEP_LOSSES
    assert len(w.watcher.loss._backward_values) <= MAX_STEP_LOSSES


# ---------------------------------------------------------------- the catalogue documents itself
@pytest.mark.skipif(not SHARED_CAUSES.exists(), reason="no ../shared/spec/causes.toml here")
def test_packaged_causes_equal_the_shared_spec():
    packaged = Path(defib.__file__).parent / "causes.toml"
    assert packaged.read_bytes() == SHARED_CAUSES.read_bytes()


RULES = all_rules()


def test_there_are_rules():
    assert "L001" in RULES and "S001" in RULES


@pytest.mark.parametrize("code", sorted(RULES))
def test_rule_is_documented_and_well_formed(code):
    cls = RULES[code]
    assert re.fullmatch(r"[DLOMESX]\d{3}", cls.code) and cls.code == code
    assert cls.cause is None or cls.cause in CAUSES, cls.cause
    assert cls.title
    doc = cls.doc()
    for section in SECTIONS:
        assert doc.get(section), f"{code}: missing or empty section {section!r}"
    assert doc.get("summary"), f"{code}: no one-line summary before the sections"
