"""Put everything a probe touches back exactly as it was.

Probes train the user's model for a few steps (the overfit test, the
learning-rate sweep, the permutation control), so each one runs inside
:func:`preserved`, which snapshots, on the CPU, every parameter and buffer,
each parameter's ``.grad`` and ``requires_grad``, each module's train/eval
mode, the optimizer's state and hyperparameters, and the random number
generators (torch CPU and CUDA, ``random``, numpy), and restores them bit for
bit on the way out, also when the probe raises. Memory: one CPU copy of the
weights and one of the optimizer state, released on exit.
"""

from __future__ import annotations

import contextlib
import copy
import random
from typing import Iterator

import numpy as np
import torch
from torch import nn


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)


@contextlib.contextmanager
def preserved(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, seed: int = 0) -> Iterator[None]:
    """Snapshot the model, optimizer and RNGs; seed the RNGs with ``seed`` for the probe; restore on exit."""
    params = [(p, _cpu_copy(p), None if p.grad is None else _cpu_copy(p.grad), p.requires_grad)
              for p in model.parameters()]
    buffers = [(b, _cpu_copy(b)) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    opt_state = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
    rng = (torch.get_rng_state(), random.getstate(), np.random.get_state(),
           torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, value, grad, requires_grad in params:
                p.requires_grad_(requires_grad)
                p.copy_(value)
                p.grad = None if grad is None else grad.to(p.device)
            for b, value in buffers:
                b.copy_(value)
        for m, training in modes:
            m.training = training
        if optimizer is not None:
            optimizer.load_state_dict(opt_state)
        torch.set_rng_state(rng[0])
        random.setstate(rng[1])
        np.random.set_state(rng[2])
        if rng[3] is not None:
            torch.cuda.set_rng_state_all(rng[3])
