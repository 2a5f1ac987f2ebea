"""Definitions that rules of more than one area read, so that no area imports another's modules.

What a single area uses stays in that area (the optimizer rules' update
ratios and learning rates: :mod:`defib.rules.optim.common`); the numbers
rules share are in :mod:`defib.rules.thresholds`.
"""

from __future__ import annotations

# optimizers that scale each step by a running gradient magnitude, so a loss scale hardly changes their steps
# (L005 leaves them alone, O008 does not blame an undivided accumulated loss on them)
ADAPTIVE = ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adagrad", "Adadelta", "RMSprop", "Adafactor", "LAMB", "Lion")
# ... of which these move every weight by about lr per step while gradients keep their sign
LR_SIZED_STEPS = ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "RMSprop", "Lion")
