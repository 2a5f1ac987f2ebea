"""Per-step overhead of defib watching a real fine-tuning step.

One process, one model: after a warm-up, blocks of K steps run bare and K
steps inside ``defib.watch(model, optimizer)`` (the hooks ``defib run``
installs, at its default settings), repeated R times. Alternating in one run
keeps a shared, noisy CPU from favouring one side; both blocks of a pair train
on the same K batches, and which goes first alternates, so that batch lengths
and order cannot favour one either. A step is what a user's loop
does: tokenize 16 STS-B pairs (max_length 64), forward the packaged
all-MiniLM-L6-v2 with a linear head on CLS, ``F.mse_loss`` on squeezed
predictions, zero_grad, backward, AdamW step.

``--size base`` and ``--size large`` swap the encoder for a BERT-base
(110M parameters) or BERT-large (335M) configuration with random weights:
the cost of a step does not depend on what the weights have learned, and no
such checkpoint ships offline. ``--device cuda`` moves the model and each
batch to the GPU and runs the forward pass and the loss under bf16 autocast;
a step's time then ends with ``torch.cuda.synchronize()``.

    python bench/overhead/run.py            # K=10, R=8 (a few minutes)
    python bench/overhead/run.py --quick    # K=3, R=2
    python bench/overhead/run.py --size base --device cuda --out bench/overhead/gpu-base.md

The table is printed and written to bench/overhead/README.md.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import datetime as dt
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer, BertConfig

import defib
from defib.demos.data import load_stsb, model_path

HERE = Path(__file__).resolve().parent
BATCH, MAX_LEN = 16, 64


# (hidden size, layers, attention heads) of the random-weight configurations
SIZES = {"base": (768, 12, 12), "large": (1024, 24, 16)}


class Regressor(nn.Module):
    def __init__(self, path: str, size: str = "minilm"):
        super().__init__()
        if size == "minilm":
            self.encoder = AutoModel.from_pretrained(path)
        else:
            hidden, layers, heads = SIZES[size]
            config = BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                intermediate_size=4 * hidden)
            self.encoder = AutoModel.from_config(config)
        self.head = nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state  # (B, T, H)
        return self.head(hidden[:, 0]).squeeze(-1)  # (B,)


class Batches:
    """An endless shuffled stream of STS-B batches, tokenized on demand like a collate_fn."""

    def __init__(self, tokenizer, seed: int):
        rows = load_stsb("train")
        self.tok = tokenizer
        self.pairs = list(zip(rows.sentence1, rows.sentence2, rows.score))
        self.rng = random.Random(seed)
        self.order: list[int] = []

    def next(self) -> list[tuple[str, str, float]]:
        """The next batch's rows (tokenized inside the timed step, like a collate_fn would)."""
        if len(self.order) < BATCH:
            self.order = list(range(len(self.pairs)))
            self.rng.shuffle(self.order)
        idx, self.order = self.order[:BATCH], self.order[BATCH:]
        return [self.pairs[i] for i in idx]

    def encode(self, rows: list[tuple[str, str, float]]):
        s1, s2, y = zip(*rows)
        enc = self.tok(list(s1), list(s2), padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
        return enc, torch.tensor(y, dtype=torch.float)


def step(model, optimizer, batches: Batches, rows, device: str = "cpu") -> tuple[float, float]:
    """One training step on these rows; returns (wall seconds, CPU seconds of this process, all threads).

    Both sides of a block pair get the very same rows: with dynamic padding a
    step's time depends on its batch's lengths. On a GPU the step ends when the
    device has finished it, so that work defib queued is counted, and so is any
    wait it forced.
    """
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    enc, y = batches.encode(rows)
    enc, y = enc.to(device), y.to(device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=cuda):
        preds = model(**enc)
        loss = F.mse_loss(preds.float(), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def med(times: list[tuple[float, float]], which: int = 0) -> float:
    """Median wall (0) or CPU (1) seconds."""
    return statistics.median(t[which] for t in times)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else f"CPU ({cpu_model()})"


def load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", "-k", type=int, default=10, help="steps per block (K)")
    ap.add_argument("--repeats", "-r", type=int, default=8, help="bare/watched block pairs (R)")
    ap.add_argument("--warmup", type=int, default=5, help="unmeasured steps first")
    ap.add_argument("--quick", action="store_true", help="K=3, R=2, 2 warm-up steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", choices=["minilm", "base", "large"], default="minilm",
                    help="the packaged MiniLM (real weights) or a BERT-base/large configuration (random weights)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: bf16 autocast on the GPU")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the packaged MiniLM's)")
    ap.add_argument("--out", type=Path, default=HERE / "README.md", help="markdown file to write")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    if args.quick:
        args.block, args.repeats, args.warmup = 3, 2, 2
    if args.block < 1 or args.repeats < 1:
        ap.error("--block and --repeats must be at least 1")

    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no GPU is visible to torch")
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or model_path())
    model = Regressor(model_path() if args.size == "minilm" else "", args.size).to(args.device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5)
    batches = Batches(tokenizer, args.seed)
    load_start = load()
    began = time.perf_counter()

    for _ in range(args.warmup):
        step(model, optimizer, batches, batches.next(), args.device)
    # one watcher for the whole run, attached only during watched blocks, so that
    # its sampling schedule is that of one long watched run
    w = defib.watch(model, optimizer, announce=None)
    bare_blocks: list[list[tuple[float, float]]] = []
    watched_blocks: list[list[tuple[float, float]]] = []
    for r in range(args.repeats):
        # both sides of a pair train on the same K batches, and which side goes first alternates,
        # so neither batch lengths nor a warming cache can favour one side
        block = [batches.next() for _ in range(args.block)]

        def bare_side() -> None:
            bare_blocks.append([step(model, optimizer, batches, rows, args.device) for rows in block])

        def watched_side() -> None:
            w.start()
            try:
                watched_blocks.append([step(model, optimizer, batches, rows, args.device) for rows in block])
            finally:
                w.stop()

        for side in ((bare_side, watched_side) if r % 2 == 0 else (watched_side, bare_side)):
            side()
        print(f"block {r + 1}/{args.repeats}: bare {med(bare_blocks[-1]):.3f} s/step, "
              f"watched {med(watched_blocks[-1]):.3f} s/step", file=sys.stderr, flush=True)
    total = time.perf_counter() - began
    verdict = w.diagnosis.verdict if w.diagnosis is not None else "n/a"

    bare = [t for b in bare_blocks for t in b]
    watched = [t for b in watched_blocks for t in b]
    mb, mw = med(bare), med(watched)
    cb, cw = med(bare, 1), med(watched, 1)
    pair_ratios = [med(wb) / med(bb) for bb, wb in zip(bare_blocks, watched_blocks)]
    # a block's total time counts defib's sampled steps (every sample_every-th step does more work),
    # which the median of single steps would hide; block totals are paired on the same batches
    total_ratios = [sum(t[0] for t in wb) / sum(t[0] for t in bb) for bb, wb in zip(bare_blocks, watched_blocks)]
    sum_ratio = sum(t[0] for t in watched) / sum(t[0] for t in bare)
    argv = " ".join(sys.argv[1:])
    lines = [
        "# Overhead benchmark",
        "",
        "Per-step wall time of a real fine-tuning step with and without `defib.watch()`,",
        "alternated in one process (see the docstring of `run.py` for what a step is).",
        "",
        f"Model: {args.size} ({n_params / 1e6:.0f}M parameters"
        f"{', the packaged pretrained weights' if args.size == 'minilm' else ', a random-weight configuration'}); "
        f"device: {device_name(args.device)}{', bf16 autocast' if args.device == 'cuda' else ''}.  ",
        f"Command: `python bench/overhead/run.py{' ' + argv if argv else ''}`  ",
        f"Date: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
        f"Machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model()}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; defib {defib.__version__}  ",
        f"Load average (1/5/15 min) at start: {load_start}; at end: {load()}. The CPU is shared with other "
        "work, so absolute times are noisy; alternating blocks in one process is what keeps the ratio fair.  ",
        f"Steps: {args.warmup} warm-up, then {args.repeats} x ({args.block} bare + {args.block} watched, the same "
        f"{args.block} batches on both sides, which side goes first alternating); "
        f"{total:.0f} s in all; defib's verdict on the watched steps: {verdict}.",
        "",
        "| | median wall s/step | median CPU s/step | steps |",
        "|---|---|---|---|",
        f"| bare | {mb:.3f} | {cb:.3f} | {len(bare)} |",
        f"| watched | {mw:.3f} | {cw:.3f} | {len(watched)} |",
        f"| **ratio watched/bare** | **{mw / mb:.3f}** | {cw / cb:.3f} | |",
        f"| median of the per-block wall ratios | {statistics.median(pair_ratios):.3f} | | |",
        f"| **median over block pairs of total watched / total bare wall time** | "
        f"**{statistics.median(total_ratios):.3f}** | | |",
        f"| all watched steps' wall time / all bare steps' | {sum_ratio:.3f} | | |",
        "",
        "CPU s/step is this process's CPU time (all threads) over the step: less sensitive than wall time",
        "to other processes on the machine. The block-total ratios include defib's sampled steps (one in",
        "ten does the heavier statistics), which a median of single steps hides; they are the overhead a",
        "run pays on average.",
        "",
        "| block | bare median wall s/step | watched median wall s/step | ratio |",
        "|---|---|---|---|",
    ]
    for i, (bb, wb) in enumerate(zip(bare_blocks, watched_blocks), 1):
        b, wt = med(bb), med(wb)
        lines.append(f"| {i} | {b:.3f} | {wt:.3f} | {wt / b:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
