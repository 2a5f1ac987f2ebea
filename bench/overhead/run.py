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

``--sizes`` picks among ``minilm``, ``base`` and ``large``: the last two swap the encoder for a BERT-base
(110M parameters) or BERT-large (335M) configuration with random weights:
the cost of a step does not depend on what the weights have learned, and no
such checkpoint ships offline. ``--device cuda`` moves the model and each
batch to the GPU and runs the forward pass and the loss under bf16 autocast;
a step's time then ends with ``torch.cuda.synchronize()``.

Memory: on the CPU, each side also runs alone in a fresh process for a few
steps and reports its peak RSS (``ru_maxrss``), watched minus bare; on a GPU,
the peak of allocated device memory per block (``max_memory_allocated``),
median of the watched blocks minus median of the bare ones. Both are set
against the model's own parameter memory.

    python bench/overhead/run.py                        # MiniLM, base and large on the CPU (long)
    python bench/overhead/run.py --sizes minilm --quick # K=3, R=2
    python bench/overhead/run.py --sizes base,large --device cuda --repeats 40 --out bench/overhead/gpu.md

On a GPU each pair's batches first run once untimed (``--prime``, on by default there), so that
neither side pays for meeting a new batch shape first.

The table is printed and written to bench/overhead/README.md. ``stacks.py`` measures the same way
under the transformers Trainer, Lightning, sentence-transformers, PEFT and accelerate (stacks.md).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import datetime as dt
import gc
import platform
import resource
import subprocess
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

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


def step(model, optimizer, batches: Batches, rows, device: str = "cpu",
         backward: Callable[[torch.Tensor], None] = torch.Tensor.backward) -> tuple[float, float]:
    """One training step on these rows; returns (wall seconds, CPU seconds of this process, all threads).

    Both sides of a block pair get the very same rows: with dynamic padding a
    step's time depends on its batch's lengths. On a GPU the step ends when the
    device has finished it, so that work defib queued is counted, and so is any
    wait it forced. ``backward(loss)``: how the user's loop back-propagates
    (``accelerator.backward`` under accelerate).
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
    backward(loss)
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


def build(size: str, device: str, seed: int, tokenizer_path: str | None):
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or model_path())
    model = Regressor(model_path() if size == "minilm" else "", size).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5)
    return model, optimizer, Batches(tokenizer, seed)


def param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def alternate(label: str, args: argparse.Namespace, w: "defib.watch", batches: Batches,
              run_block: Callable[[list], list[tuple[float, float]]],
              prime: Callable[[list], object] | None = None) -> tuple[dict[str, list], dict[str, list[int]]]:
    """R pairs of blocks, one bare and one watched, on the same K batches; which side goes first alternates.

    ``run_block(batches' rows)`` trains on them and returns its timed pieces,
    ``(wall, cpu)`` seconds each, whose sum is the block's time: its steps in
    a plain loop, one piece for a whole ``trainer.train()``. ``w`` is attached
    only during watched blocks, so its sampling schedule is that of one long
    watched run. ``prime(rows)``: run untimed before each pair (see
    ``--prime``). Returns the pieces per block per side, and on a GPU each
    block's peak of allocated memory.
    """
    cuda = args.device == "cuda"
    blocks: dict[str, list] = {"bare": [], "watched": []}
    peaks: dict[str, list[int]] = {"bare": [], "watched": []}
    for r in range(args.repeats):
        # both sides of a pair train on the same K batches, and which side goes first alternates,
        # so neither batch lengths nor a warming cache can favour one side
        block = [batches.next() for _ in range(args.block)]
        if prime is not None:
            # an untimed bare pass over the pair's batches first: on a GPU the first side to meet a new
            # batch shape pays for kernel selection and allocator growth, which made the pair ratios
            # alternate with the order (bench/overhead/gpu.md); primed, both sides meet known shapes
            prime(block)
        for side in (("bare", "watched") if r % 2 == 0 else ("watched", "bare")):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            if side == "watched":
                w.start()
            try:
                blocks[side].append(run_block(block))
            finally:
                if side == "watched":
                    w.stop()
            if cuda:
                peaks[side].append(torch.cuda.max_memory_allocated())
        per_step = {side: sum(t[0] for t in blocks[side][-1]) / args.block for side in blocks}
        print(f"{label} block {r + 1}/{args.repeats}: bare {per_step['bare']:.3f} s/step, "
              f"watched {per_step['watched']:.3f} s/step", file=sys.stderr, flush=True)
    return blocks, peaks


def pair_ratios(blocks: dict[str, list], which: int = 0) -> list[float]:
    """Watched over bare block totals of wall (0) or CPU (1) seconds, pair by pair.

    A block's total counts defib's sampled steps (every sample_every-th step
    does more work), which the median of single steps would hide; the two
    blocks of a pair trained on the same batches.
    """
    return [sum(t[which] for t in wb) / sum(t[which] for t in bb) for bb, wb in zip(blocks["bare"], blocks["watched"])]


def measure(size: str, args: argparse.Namespace) -> dict:
    """Alternated bare and watched blocks of one model size: the step times, and on a GPU the memory peaks."""
    cuda = args.device == "cuda"
    model, optimizer, batches = build(size, args.device, args.seed, args.tokenizer)
    began = time.perf_counter()
    for _ in range(args.warmup):
        step(model, optimizer, batches, batches.next(), args.device)
    w = defib.watch(model, optimizer, announce=None)

    def run_block(block):
        return [step(model, optimizer, batches, rows, args.device) for rows in block]

    blocks, peaks = alternate(size, args, w, batches, run_block, run_block if args.prime else None)
    result = {
        "size": size, "params": sum(p.numel() for p in model.parameters()), "param_bytes": param_bytes(model),
        "seconds": time.perf_counter() - began, "verdict": w.diagnosis.verdict if w.diagnosis else "n/a",
        "bare": [t for b in blocks["bare"] for t in b], "watched": [t for b in blocks["watched"] for t in b],
        "blocks": blocks, "total_ratios": pair_ratios(blocks),
        "sample_every_now": w.watcher.s.config.get("sample_every_now", w.watcher.sample_every),
    }
    if cuda:  # per pair (the same batches on both sides), then the median: robust to drift between blocks
        result["memory"] = statistics.median(w_ - b_ for b_, w_ in zip(peaks["bare"], peaks["watched"]))
    return result


def memory_side(size: str, side: str, args: argparse.Namespace) -> int:
    """Run one side alone for a few steps in this (fresh) process; its peak RSS in bytes."""
    model, optimizer, batches = build(size, "cpu", args.seed, args.tokenizer)
    w = defib.watch(model, optimizer, announce=None) if side == "watched" else None
    if w is not None:
        w.start()
    for _ in range(args.memory_steps):
        step(model, optimizer, batches, batches.next())
    if w is not None:
        w.stop()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def memory_cpu(size: str, args: argparse.Namespace) -> int:
    """Peak RSS of a watched run minus that of a bare one, each alone in a fresh process."""
    peaks = {}
    for side in ("bare", "watched"):
        cmd = [sys.executable, __file__, "--memory-side", side, "--sizes", size, "--seed", str(args.seed),
               "--memory-steps", str(args.memory_steps)] + (["--tokenizer", args.tokenizer] if args.tokenizer else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        peaks[side] = int(out.stdout.strip().splitlines()[-1])
    return peaks["watched"] - peaks["bare"]


def context_lines(args: argparse.Namespace, load_start: str, script: str) -> list[str]:
    """The table's setting: device, the exact command, date, machine, threads, versions, load average."""
    argv = " ".join(sys.argv[1:])
    return [
        f"Device: {device_name(args.device)}{', bf16 autocast' if args.device == 'cuda' else ''}.  ",
        f"Command: `python bench/overhead/{script}{' ' + argv if argv else ''}`  ",
        f"Date: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ",
        f"Machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model()}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; defib {defib.__version__}  ",
        f"Load average (1/5/15 min) at start: {load_start}; at end: {load()}. Other work on the machine makes "
        "absolute times noisy; alternating blocks in one process is what keeps the ratio fair.  ",
    ]


def ratio_cells(blocks: dict[str, list], total_ratios: list[float]) -> str:
    """The ratio columns both tables share: median of pairs (bold), min-max, geometric mean, all over all."""
    everything = {side: sum(t[0] for b in blocks[side] for t in b) for side in blocks}
    return (f"**{statistics.median(total_ratios):.3f}** | {min(total_ratios):.3f}-{max(total_ratios):.3f} | "
            f"{statistics.geometric_mean(total_ratios):.3f} | {everything['watched'] / everything['bare']:.3f}")


def render(results: list[dict], args: argparse.Namespace, load_start: str) -> str:
    cuda = args.device == "cuda"
    lines = [
        "# Overhead benchmark",
        "",
        "Per-step wall time of a real fine-tuning step with and without `defib.watch()`,",
        "alternated in one process (see the docstring of `run.py` for what a step is), and the memory",
        "watching adds. MiniLM has its packaged pretrained weights; base and large are random-weight",
        "BERT configurations (a step costs the same whatever the weights learned).",
        "",
        *context_lines(args, load_start, "run.py"),
        f"Steps per size: {args.warmup} warm-up, then {args.repeats} x ({args.block} bare + {args.block} watched, the "
        f"same {args.block} batches on both sides, which side goes first alternating"
        + (", each pair's batches first run once untimed" if args.prime else "") + ").",
        "",
        "| model | parameters | **block-total ratio** (median of pairs) | spread of pair ratios (min-max) | "
        "geometric mean of pair ratios | all watched / all bare | median step ratio | bare s/step | "
        "watched s/step | memory watched - bare | share of parameter memory | sampling period at the end | "
        "verdict | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mb, mw = med(r["bare"]), med(r["watched"])
        tr = r["total_ratios"]
        mem = r.get("memory")
        mem_cells = (f"{mem / 2**20:+.1f} MiB | {mem / r['param_bytes']:.1%}" if mem is not None else "n/a | n/a")
        lines.append(
            f"| {r['size']} | {r['params'] / 1e6:.0f}M | {ratio_cells(r['blocks'], tr)} | {mw / mb:.3f} | "
            f"{mb:.3f} | {mw:.3f} | {mem_cells} | {r['sample_every_now']} | {r['verdict']} | {r['seconds']:.0f} |")
    lines += [
        "",
        "The block-total ratio counts defib's sampled steps (they do the heavier statistics), which the median",
        "of single steps hides: it is what a run pays on average. defib samples every 10 steps for the first",
        "100 watched steps, then every 10-80 as its own measured cost allows (1% of the run's time): the last",
        "column but two says where it ended. Where a step's time depends on which side meets a pair's new",
        "batch shapes first (a GPU), the pair ratios alternate with the order; the geometric mean over all",
        "pairs (half of each order) and the ratio of all steps' totals are then the fairer figures. Memory: "
        + ("the peak of allocated GPU memory per block, watched minus bare within each pair (the same batches), median over pairs."
           if cuda else f"peak RSS of {args.memory_steps} watched steps minus {args.memory_steps} bare ones, "
           "each alone in a fresh process (allocator noise is a few MiB either way)."),
        "",
    ]
    for r in results:
        lines += [f"Per block, {r['size']}:", "", "| block | bare median wall s/step | watched median wall s/step "
                  "| block-total ratio |", "|---|---|---|---|"]
        for i, (bb, wb, t) in enumerate(zip(r["blocks"]["bare"], r["blocks"]["watched"], r["total_ratios"]), 1):
            lines.append(f"| {i} | {med(bb):.3f} | {med(wb):.3f} | {t:.3f} |")
        lines.append("")
    return "\n".join(lines)


def add_timing_args(ap: argparse.ArgumentParser) -> None:
    """The options of the alternation itself, which every script of this folder takes."""
    ap.add_argument("--block", "-k", type=int, default=10, help="steps per block (K)")
    ap.add_argument("--repeats", "-r", type=int, default=8, help="bare/watched block pairs (R)")
    ap.add_argument("--warmup", type=int, default=5, help="unmeasured steps first")
    ap.add_argument("--quick", action="store_true", help="K=3, R=2, 2 warm-up steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only")


def check_timing_args(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.quick:
        args.block, args.repeats, args.warmup = 3, 2, 2
    if args.block < 1 or args.repeats < 1:
        ap.error("--block and --repeats must be at least 1")


def write(text: str, args: argparse.Namespace) -> None:
    """Print the table, and write it to ``--out`` unless ``--no-write``."""
    print(text)
    if not args.no_write:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_timing_args(ap)
    ap.add_argument("--sizes", default="minilm,base,large",
                    help="comma-separated: the packaged MiniLM (real weights), BERT-base/large configurations "
                         "(random weights)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: bf16 autocast on the GPU")
    ap.add_argument("--prime", action=argparse.BooleanOptionalAction, default=None,
                    help="run each pair's batches once, untimed, before timing it (default: on for cuda)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the packaged MiniLM's)")
    ap.add_argument("--memory-steps", type=int, default=6, help="steps of each side's memory run (CPU)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory runs (CPU)")
    ap.add_argument("--memory-side", choices=["bare", "watched"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=HERE / "README.md", help="markdown file to write")
    args = ap.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in ("minilm", *SIZES)]
    if unknown or not sizes:
        ap.error(f"--sizes: choose from minilm, {', '.join(SIZES)}")
    if args.memory_side:
        print(memory_side(sizes[0], args.memory_side, args))
        return 0
    check_timing_args(ap, args)
    if args.prime is None:
        args.prime = args.device == "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no GPU is visible to torch")
    load_start = load()
    results = []
    for size in sizes:
        gc.collect()  # the previous size's model must be gone, or freeing it mid-run shows up as a memory change
        if args.device == "cuda":
            torch.cuda.empty_cache()
        r = measure(size, args)
        if args.device == "cpu" and not args.no_memory:
            r["memory"] = memory_cpu(size, args)
        results.append(r)
    write(render(results, args, load_start), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
