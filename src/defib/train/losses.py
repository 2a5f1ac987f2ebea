"""The training losses, as ``Trainer(compute_loss_func=...)`` functions.

Each sums over the examples and divides by ``num_items_in_batch``, the
number of targets in the whole accumulated batch (the Trainer counts it
across micro-batches and devices): gradient accumulation then gives exactly
the gradient of the large batch, however uneven the last micro-batch is.
The losses call ``torch.nn.functional`` so defib's watcher sees them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

LOSSES = ("mse", "huber", "ce", "weighted-ce", "focal", "bce")
FAMILY = {"mse": "regression", "huber": "regression", "ce": "classification", "weighted-ce": "classification",
          "focal": "classification", "bce": "multilabel"}
FOCAL_GAMMA = 2.0   # Lin et al. (2017): the value that worked best for them, and the usual default


class Loss:
    """``loss(outputs, labels, num_items_in_batch)`` for the Trainer; ``weights`` per class (ce / focal)."""

    def __init__(self, name: str, weights: torch.Tensor | None = None):
        self.name = name
        self.weights = weights

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        n = _count(num_items_in_batch, labels)
        if self.name in ("mse", "huber"):
            pred = logits.squeeze(-1).float()  # (B, 1) -> (B,): never let the loss broadcast
            fn = F.mse_loss if self.name == "mse" else F.huber_loss
            return fn(pred, labels.float(), reduction="sum") / n
        if self.name == "bce":
            return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="sum") / n
        weight = self.weights.to(logits.device) if self.weights is not None and self.name != "ce" else None
        if self.name == "focal":
            ce = F.cross_entropy(logits.float(), labels, reduction="none")      # (B,)
            p_true = torch.exp(-ce)
            focal = (1 - p_true) ** FOCAL_GAMMA * ce
            if weight is not None:
                focal = focal * weight[labels]
            return focal.sum() / n
        return F.cross_entropy(logits.float(), labels, weight=weight, reduction="sum") / n


def _count(num_items_in_batch: Any, labels: torch.Tensor) -> torch.Tensor | int:
    """Targets in the accumulated batch; this micro-batch's own count when the Trainer gives none (evaluation)."""
    if num_items_in_batch is None:
        return max(1, labels.numel())
    return num_items_in_batch


def default_loss(task: str, imbalanced: bool) -> str:
    """The loss ``defib train`` uses when ``--loss`` is not given.

    Imbalanced classes get focal loss with the class weights, not weighted
    cross-entropy: in one epoch cross-entropy, weighted or not, can leave a
    rare class never predicted, where focal loss learned it on every seed
    measured (the figures are in bench/train/README.md).
    Focal's (1 - p)^gamma factor takes the gradient off the examples already
    right, so the few rare ones are not drowned by the many easy ones; class
    weights alone only rescale each class's share.
    """
    if task == "regression":
        return "mse"
    if task == "multilabel":
        return "bce"
    return "focal" if imbalanced else "ce"
