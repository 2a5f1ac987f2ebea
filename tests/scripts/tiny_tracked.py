"""A fast torch-only training loop that logs to an experiment tracker itself, as a user's script would.

``--tracker tensorboard`` writes its own loss with a ``SummaryWriter`` in
``--dir``; ``none`` imports no tracker. At the end it prints which tracker
libraries the process imported (``tracker modules: ...``), so a test can
check that defib imported none of its own.
"""

import argparse
import sys

import torch
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--tracker", choices=("tensorboard", "none"), default="none")
parser.add_argument("--dir", default=".")
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--fault", default="", help="shape: the loss broadcasts (B, 1) against (B,)")
args = parser.parse_args()

writer = None
if args.tracker == "tensorboard":
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(args.dir)

torch.manual_seed(0)
x = torch.randn(512, 8)
y = x @ torch.randn(8) + 0.1 * torch.randn(512)
model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for step in range(1, args.steps + 1):
    i = torch.randint(0, 512, (32,))
    pred = model(x[i])
    loss = F.mse_loss(pred if args.fault == "shape" else pred.squeeze(-1), y[i])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if writer is not None:
        writer.add_scalar("train/loss", loss.item(), step)
if writer is not None:
    writer.close()
imported = [name for name in ("tensorboard", "torch.utils.tensorboard", "mlflow", "wandb") if name in sys.modules]
print("tracker modules:", " ".join(imported) or "none")
