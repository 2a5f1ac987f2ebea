"""A script that imports torch and never trains: defib must say it saw nothing to judge."""

import torch

x = torch.ones(3)
print(f"no training here, just {int(x.sum())} ones")
