"""A fast training loop for the signal tests: a linear regressor on fixed random data, torch only.

It starts in about a second (no transformers) and can run until it is
stopped, a short sleep a step, so that a signal lands mid-training. It prints
``step N`` after every step, flushed.
"""

import argparse
import time

import torch
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: run until stopped)")
parser.add_argument("--sleep", type=float, default=0.02, help="seconds of sleep after each step")
parser.add_argument("--fault", default="", help="shape: the loss broadcasts (B, 1) against (B,)")
parser.add_argument("--crash-after", type=int, default=0, help="raise an exception after this many steps")
args = parser.parse_args()

torch.manual_seed(0)
x = torch.randn(512, 8)
y = x @ torch.randn(8) + 0.1 * torch.randn(512)
model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
step = 0
while args.steps == 0 or step < args.steps:
    i = torch.randint(0, 512, (32,))
    pred = model(x[i])
    loss = F.mse_loss(pred if args.fault == "shape" else pred.squeeze(-1), y[i])
    opt.zero_grad()
    loss.backward()
    opt.step()
    step += 1
    print(f"step {step}", flush=True)
    if args.crash_after and step >= args.crash_after:
        raise RuntimeError(f"planted crash after step {step}")
    time.sleep(args.sleep)
print("done")
