"""defib's overhead under each training stack it supports, measured as ``run.py`` measures a plain loop.

Per stack, one process and one model: after a warm-up, R pairs of blocks of
K optimizer steps, one bare and one inside the watch that ``defib run``
installs, which side goes first alternating, both on the same K batches of
STS-B pairs (``run.py``'s ``alternate``: a shared, noisy CPU cannot favour a
side, nor can batch lengths). The encoder is the packaged all-MiniLM-L6-v2
(``--model``: another BERT folder with its tokenizer, the test's tiny one),
batches of 16 pairs tokenized inside the timed region (max_length 64), as a
collate_fn would.

The stacks (``--stacks``):

- ``plain``: ``run.py``'s step: MiniLM with a linear head on CLS, ``F.mse_loss``,
  zero_grad, backward, AdamW step.
- ``trainer``: transformers' ``Trainer`` on ``AutoModelForSequenceClassification``
  (one output, its own MSE), the pairs tokenized by the data collator.
- ``lightning``: a ``LightningModule`` around ``plain``'s model and loss, ``Trainer.fit``.
- ``st``: ``SentenceTransformerTrainer`` with ``CoSENTLoss`` (mean pooling).
- ``peft``: ``plain``'s loop with the encoder under ``get_peft_model`` (LoRA r=8 on
  query and value; only the adapters and the head train).
- ``accelerate``: ``plain``'s loop after ``Accelerator.prepare(model, optimizer)``, with
  ``accelerator.backward(loss)``.

What is timed, and why it is fair. For the loop stacks (plain, peft,
accelerate) a block is K of the user's steps, each timed from the batch's
tokenization to the optimizer step, as in ``run.py``. For the trainer-driven
stacks (trainer, lightning, st) a block is one ``trainer.train()`` /
``trainer.fit()`` of K steps on the block's batches, timed around the call:
that counts what defib does inside the framework's loop (its DataLoader and
collate hooks, the forward, loss, backward and step hooks, the sampled
steps) and the framework's own per-call setup, which is the same on both
sides and only dilutes the ratio a little (a real run pays that setup once,
not once every K steps). What is built once stays out of every block: the
model, the trainer object, and the optimizer, which the Trainer keeps
between ``train()`` calls and the LightningModule hands back from
``configure_optimizers``, so that AdamW's state is not rebuilt per block on
either side. The batches are the same on both sides: the Trainer reads the
block's rows in order (``train_sampling_strategy="sequential"``), Lightning
from an unshuffled DataLoader, and sentence-transformers' sampler draws from
a generator seeded with the same seed on every call.

What watches. ``defib run`` attaches ``defib.watch()`` with neither model nor
optimizer (the watcher finds them from the first forward and step) and the
same global hooks for every stack; it does not use the callbacks. So here
each stack is watched by one ``defib.watch(announce=None)``, started and
stopped around each watched block, so that its sampling schedule is that of
one long watched run (every 10th step sampled in the first 100, as in a run's
start). Under a trainer each watched block builds a new DataLoader the
watcher meets: a real run meets one; that errs against defib.

    python bench/overhead/stacks.py --quick --no-write             # K=3, R=2 per stack
    python bench/overhead/stacks.py --block 5 --repeats 6 --warmup 2  # the committed table

The table is printed and written to bench/overhead/stacks.md.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoTokenizer

import defib
from defib.demos.data import model_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (BATCH, HERE, MAX_LEN, Batches, Regressor, add_timing_args, alternate,  # noqa: E402
                 check_timing_args, context_lines, load, pair_ratios, ratio_cells, step, write)

LR = 3e-5
Pieces = list[tuple[float, float]]  # timed pieces of a block, (wall, cpu) seconds each


@dataclass
class Stack:
    model: nn.Module  # what trains, for the parameter counts
    run_block: Callable[[list], Pieces]  # train on a block's rows (one list of BATCH rows a step)


def timed(train: Callable[[], object]) -> Pieces:
    """One piece: the whole call, wall and CPU seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    train()
    return [(time.perf_counter() - start, time.process_time() - cpu)]


def flat(block: list) -> list:
    """A block's rows in order, for a trainer that batches them itself."""
    return [row for rows in block for row in rows]


def loop(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Batches,
         backward: Callable[[torch.Tensor], None] = torch.Tensor.backward) -> Stack:
    """A user's own loop: each of the block's steps timed as in ``run.py``."""
    model.train()
    return Stack(model, lambda block: [step(model, optimizer, batches, rows, backward=backward) for rows in block])


def plain(args: argparse.Namespace, batches: Batches) -> Stack:
    model = Regressor(args.model)
    return loop(model, torch.optim.AdamW(model.parameters(), lr=LR), batches)


def peft(args: argparse.Namespace, batches: Batches) -> Stack:
    from peft import LoraConfig, get_peft_model

    model = Regressor(args.model)
    model.encoder = get_peft_model(model.encoder, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1,
                                                             target_modules=["query", "value"]))
    # LoRA's usual learning rate: the adapters start at zero and must move
    return loop(model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4), batches)


def accelerate(args: argparse.Namespace, batches: Batches) -> Stack:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = Regressor(args.model)
    model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=LR))
    return loop(model, optimizer, batches, backward=accelerator.backward)


def hf_args(cls: type, out: str, args: argparse.Namespace, **extra) -> object:
    """Training arguments for a Trainer that only trains: no saving, logging, progress bar or trackers."""
    return cls(output_dir=out, per_device_train_batch_size=BATCH, max_steps=args.block, learning_rate=LR,
               lr_scheduler_type="constant", report_to=[], save_strategy="no", logging_strategy="no",
               disable_tqdm=True, use_cpu=True, seed=args.seed, data_seed=args.seed, dataloader_num_workers=0,
               **extra)


def hf_block(t: object, as_dataset: Callable[[list], object]) -> Callable[[list], Pieces]:
    """A block under a transformers Trainer (or a subclass): ``train()`` on ``as_dataset(rows)``, one step a batch.

    Building the dataset stays outside the timed call, as the dataset of a real run is built before it.
    """
    from transformers.trainer_callback import PrinterCallback

    t.remove_callback(PrinterCallback)  # it prints the run's metrics at every train()'s end

    def run_block(block: list) -> Pieces:
        t.train_dataset, t.args.max_steps = as_dataset(flat(block)), len(block)
        return timed(t.train)

    return run_block


def trainer(args: argparse.Namespace, batches: Batches) -> Stack:
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1)

    def collate(rows):
        enc, y = batches.encode(rows)
        return {**enc, "labels": y}

    t = Trainer(model=model, data_collator=collate,
                args=hf_args(TrainingArguments, args.scratch, args, train_sampling_strategy="sequential",
                             remove_unused_columns=False))
    return Stack(model, hf_block(t, list))  # the rows as they are: the collator tokenizes them


def st(args: argparse.Namespace, batches: Batches) -> Stack:
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.modules import Pooling

    encoder = Transformer(args.model, max_seq_length=MAX_LEN)
    model = SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), "mean")], device="cpu")
    t = SentenceTransformerTrainer(model=model, loss=losses.CoSENTLoss(model),
                                   args=hf_args(SentenceTransformerTrainingArguments, args.scratch, args))

    def as_dataset(rows: list) -> Dataset:
        s1, s2, score = zip(*rows)
        return Dataset.from_dict({"sentence1": list(s1), "sentence2": list(s2), "score": list(score)})

    return Stack(model, hf_block(t, as_dataset))


def lightning(args: argparse.Namespace, batches: Batches) -> Stack:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # one "GPU available" banner a block

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = Regressor(args.model)
            self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=LR)

        def training_step(self, batch, batch_idx):
            enc, y = batch
            return F.mse_loss(self.net(**enc), y)

        def configure_optimizers(self):
            return self.optimizer  # the same AdamW, state and all, in every fit

    module = Module()
    module.train()  # from_pretrained leaves the encoder in eval mode, and Lightning keeps a module's mode

    def run_block(block: list) -> Pieces:
        fit = pl.Trainer(max_steps=len(block), accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
        loader = DataLoader(flat(block), batch_size=BATCH, shuffle=False, collate_fn=batches.encode)
        return timed(lambda: fit.fit(module, loader))

    return Stack(module, run_block)


STACKS: dict[str, Callable[[argparse.Namespace, Batches], Stack]] = {
    "plain": plain, "trainer": trainer, "lightning": lightning, "st": st, "peft": peft, "accelerate": accelerate}


def measure(name: str, args: argparse.Namespace) -> dict:
    """One stack: warm-up, then the alternated blocks; the pair ratios, s/step, and what the watcher saw."""
    torch.manual_seed(args.seed)
    batches = Batches(AutoTokenizer.from_pretrained(args.model), args.seed)
    stack = STACKS[name](args, batches)
    began = time.perf_counter()
    if args.warmup:  # bare; the Trainer builds its optimizer here, once
        stack.run_block([batches.next() for _ in range(args.warmup)])
    w = defib.watch(announce=None)  # as `defib run` attaches it: it finds the model and optimizer itself
    blocks, _ = alternate(name, args, w, batches, stack.run_block)
    per_step = {side: [sum(t[0] for t in b) / args.block for b in blocks[side]] for side in blocks}
    return {
        "stack": name, "blocks": blocks, "total_ratios": pair_ratios(blocks), "cpu_ratios": pair_ratios(blocks, 1),
        "bare": statistics.median(per_step["bare"]), "watched": statistics.median(per_step["watched"]),
        "params": sum(p.numel() for p in stack.model.parameters()),
        "trainable": sum(p.numel() for p in stack.model.parameters() if p.requires_grad),
        "steps_watched": w.watcher.s.step, "verdict": w.diagnosis.verdict if w.diagnosis else "n/a",
        "sample_every_now": w.watcher.s.config.get("sample_every_now", w.watcher.sample_every),
        "seconds": time.perf_counter() - began,
    }


def count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def render(results: list[dict], args: argparse.Namespace, load_start: str) -> str:
    lines = [
        "# Overhead under each training stack",
        "",
        "Wall time of the same fine-tuning on STS-B pairs with and without the watch `defib run` attaches, under",
        "each stack defib supports, alternated in one process per stack (the docstring of `stacks.py` says what a",
        "step and a block are under each, and why the comparison is fair). Target: within 3% of the bare run.",
        "",
        *context_lines(args, load_start, "stacks.py"),
        f"Model: `{args.model}`.  ",
        f"Per stack: {args.warmup} warm-up steps, then {args.repeats} x ({args.block} bare + {args.block} watched "
        f"steps, the same {args.block} batches of {BATCH} on both sides, which side goes first alternating).",
        "",
        "| stack | parameters (trainable) | **block-total ratio** (median of pairs) | spread of pair ratios (min-max) "
        "| geometric mean of pair ratios | all watched / all bare | CPU-time ratio (median of pairs) | bare s/step "
        "| watched s/step | steps watched | sampling period at the end | verdict | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['stack']} | {count(r['params'])} ({count(r['trainable'])}) | "
            f"{ratio_cells(r['blocks'], r['total_ratios'])} | {statistics.median(r['cpu_ratios']):.3f} | "
            f"{r['bare']:.3f} | {r['watched']:.3f} | "
            f"{r['steps_watched']} | {r['sample_every_now']} | {r['verdict']} | {r['seconds']:.0f} |")
    lines += [
        "",
        "s/step: a block's time over its K steps, median over the blocks of a side; under a trainer the block's",
        "time is the whole `train()`/`fit()` call, the framework's per-call setup included on both sides.",
        "Steps watched: the optimizer steps the watcher counted, R x K when it saw every watched step.",
        "CPU-time ratio: the same pairs' process CPU time (all threads), watched over bare: time spent waiting for",
        "a core another process holds does not count there, so on a busy machine it is the steadier of the two;",
        "it misses only what defib would make the process wait for (nothing, on a CPU).",
        "",
    ]
    for r in results:
        lines += [f"Per block, {r['stack']}:", "", "| pair | bare s/step | watched s/step | block-total ratio |",
                  "|---|---|---|---|"]
        for i, (bb, wb, t) in enumerate(zip(r["blocks"]["bare"], r["blocks"]["watched"], r["total_ratios"]), 1):
            lines.append(f"| {i} | {sum(x[0] for x in bb) / args.block:.3f} | "
                         f"{sum(x[0] for x in wb) / args.block:.3f} | {t:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_timing_args(ap)
    ap.add_argument("--stacks", default=",".join(STACKS), help=f"comma-separated, of: {', '.join(STACKS)}")
    ap.add_argument("--model", default=None, help="a BERT folder with its tokenizer (default: the packaged MiniLM)")
    ap.add_argument("--out", type=Path, default=HERE / "stacks.md", help="markdown file to write")
    args = ap.parse_args(argv)
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    unknown = [s for s in stacks if s not in STACKS]
    if unknown or not stacks:
        ap.error(f"--stacks: choose from {', '.join(STACKS)}")
    check_timing_args(ap, args)
    args.model = args.model or model_path()
    args.device = "cpu"  # what alternate and the table's header read
    load_start = load()
    with tempfile.TemporaryDirectory() as scratch:  # the Trainers' output_dir; they save nothing there
        args.scratch = scratch
        results = [measure(name, args) for name in stacks]
    write(render(results, args, load_start), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
