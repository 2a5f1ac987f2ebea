"""Statistics reduced across ``torchrun`` ranks, so rank 0's report speaks for the whole run.

Under DDP each rank sees only its own shard of the batches: its prediction
spread, loss window and label counts are estimates from 1/N of the data. At
each evaluation point the watcher averages those estimates (and sums the
counts) over all ranks with one ``all_reduce`` of a small fixed-length
tensor, then overwrites its own latest values with the result; every rank then
runs the rules on the same numbers, and rank 0 alone reports.

Deadlock is the risk of any collective a library adds to a user's run: all
ranks must call it the same number of times, in the same order relative to
the user's own collectives. Evaluation points are fixed optimizer steps
(steps 1-3, then every ``evaluate_every``), reached after the optimizer step
on every rank; DDP keeps the ranks' step counts equal. The call sits outside
the watcher's error handling (see ``Watcher.step_post``), so an internal error
on one rank cannot make it skip a collective the others wait in. Nothing is
reduced at exit, where ranks may already have torn down their process group.
No-op when ``torch.distributed`` is not initialised or has one rank.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

MAX_CLASSES = 64   # classes whose label / prediction counts are summed across ranks


def world_size() -> int:
    """Ranks in the default process group; 1 when there is none."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


def is_main_process() -> bool:
    """True on global rank 0, or when there is no process group (``RANK`` is read before one exists).

    Reports, HTML files and announcements come from this process only, so a
    ``torchrun`` job prints one diagnosis, not one per rank.
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


def reduce_signals(s: Any) -> None:
    """Average the ranks' latest spread / loss / baseline estimates and sum their class counts, in place.

    Every rank sends a tensor of the same length, whatever it has seen (NaN
    marks a value it does not have), and calls ``all_reduce`` exactly once,
    even if packing its own values fails.
    """
    n = world_size()
    if n == 1:
        return
    try:
        scalars, counts = _pack(s)
    except Exception:  # never skip the collective: the other ranks are already waiting in it
        scalars, counts = [math.nan] * N_SCALARS, [0.0] * (2 * MAX_CLASSES)
    values = [v if math.isfinite(v) else 0.0 for v in scalars]
    present = [1.0 if math.isfinite(v) else 0.0 for v in scalars]
    buf = torch.tensor(values + present + counts, dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(buf)
    out = buf.cpu().tolist()
    means = [out[i] / out[N_SCALARS + i] if out[N_SCALARS + i] else math.nan for i in range(N_SCALARS)]
    _unpack(s, means, out[2 * N_SCALARS:])
    s.config["ranks"] = n


N_SCALARS = 6  # spread, loss window, baseline (latest points), batch_std, window_std, window_mean


def _pack(s: Any) -> tuple[list[float], list[float]]:
    p = s.preds
    if p is None:
        return [math.nan] * N_SCALARS, [0.0] * (2 * MAX_CLASSES)
    scalars = [_nan(x.last) for x in (p.spread, p.loss_window, p.baseline)]
    scalars += [_nan(p.batch_std), _nan(p.window_std), _nan(p.window_mean)]
    counts = [0.0] * (2 * MAX_CLASSES)
    if p.task == "classification":
        for c, v in p.label_counts.items():
            if 0 <= c < MAX_CLASSES:
                counts[c] = float(v)
        for c, v in p.pred_counts.items():
            if 0 <= c < MAX_CLASSES:
                counts[MAX_CLASSES + c] = float(v)
    return scalars, counts


def _unpack(s: Any, means: list[float], counts: list[float]) -> None:
    p = s.preds
    if p is None:
        return
    for x, v in zip((p.spread, p.loss_window, p.baseline), means[:3]):
        if x.last is not None and math.isfinite(v):
            x.set_last(v)
    p.batch_std, p.window_std, p.window_mean = (_keep(old, v) for old, v in
                                                zip((p.batch_std, p.window_std, p.window_mean), means[3:]))
    if p.task == "classification" and any(counts):
        p.label_counts = {c: int(v) for c, v in enumerate(counts[:MAX_CLASSES]) if v}
        p.pred_counts = {c: int(v) for c, v in enumerate(counts[MAX_CLASSES:]) if v}


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _keep(old: float | None, new: float) -> float | None:
    return new if old is not None and math.isfinite(new) else old


def _device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo (CPU) takes CPU tensors."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
