"""The training losses, as ``Trainer(compute_loss_func=...)`` functions.

Each sums over the examples and divides by ``num_items_in_batch``, the
number of targets in the whole accumulated batch (the Trainer counts it
across micro-batches and devices): gradient accumulation then gives exactly
the gradient of the large batch, however uneven the last micro-batch is.
The losses call ``torch.nn.functional`` so defib's watcher sees them.
Token classification uses the classification losses over every position,
the positions labelled -100 (later word pieces, special tokens, padding) left
out: the Trainer's ``num_items_in_batch`` counts only the others.
The similarity losses (``cosent``, ``cosine``) are sentence-transformers' own
modules, built in :mod:`defib.train.similarity`; they are named here so that
``--loss`` is checked against the task in one place.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from defib.signals.run import TOKEN_TASK

LOSSES = ("mse", "huber", "ce", "weighted-ce", "focal", "bce", "cosent", "cosine")
FAMILY = {"mse": "regression", "huber": "regression", "ce": "classification", "weighted-ce": "classification",
          "focal": "classification", "bce": "multilabel", "cosent": "similarity", "cosine": "similarity"}
IGNORE = -100       # the label of a position the loss leaves out (the transformers convention)
FOCAL_GAMMA = 2.0   # Lin et al. (2017): the value that worked best for them, and the usual default


class Loss:
    """``loss(outputs, labels, num_items_in_batch)`` for the Trainer; ``weights`` per class (ce / focal)."""

    def __init__(self, name: str, weights: torch.Tensor | None = None):
        self.name = name
        self.weights = weights

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        if logits.dim() == 3:  # tokens: (B, T, K) against (B, T); a view, so the watcher still sees tokens
            logits, labels = logits.view(-1, logits.shape[-1]), labels.view(-1)
        n = _count(num_items_in_batch, labels)
        if self.name in ("mse", "huber"):
            pred = logits.squeeze(-1).float()  # (B, 1) -> (B,): never let the loss broadcast
            fn = F.mse_loss if self.name == "mse" else F.huber_loss
            return fn(pred, labels.float(), reduction="sum") / n
        if self.name == "bce":
            return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="sum") / n
        weight = self.weights.to(logits.device) if self.weights is not None and self.name != "ce" else None
        if self.name == "focal":
            ce = F.cross_entropy(logits.float(), labels, reduction="none", ignore_index=IGNORE)  # (B,); 0 if ignored
            p_true = torch.exp(-ce)
            focal = (1 - p_true) ** FOCAL_GAMMA * ce
            if weight is not None:
                focal = focal * weight[labels.clamp(min=0)]  # an ignored position's focal term is already 0
            return focal.sum() / n
        return F.cross_entropy(logits.float(), labels, weight=weight, reduction="sum", ignore_index=IGNORE) / n


def _count(num_items_in_batch: Any, labels: torch.Tensor) -> torch.Tensor | int:
    """Targets in the accumulated batch; this micro-batch's own count when the Trainer gives none (evaluation)."""
    if num_items_in_batch is None:
        if labels.dtype.is_floating_point:
            return max(1, labels.numel())
        return (labels != IGNORE).sum().clamp(min=1)  # a tensor: nothing read on the host
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
    Tags are always imbalanced (O is most tokens), and their default is the
    plain cross-entropy of the transformers token-classification recipe:
    weighting O down buys entity recall with many false entities; the
    summary's share of non-O predictions shows when that trade is needed.
    """
    if task == "regression":
        return "mse"
    if task == "similarity":  # why CoSENT: defib/train/similarity.py
        return "cosent"
    if task == "multilabel":
        return "bce"
    if task == TOKEN_TASK:
        return "ce"
    return "focal" if imbalanced else "ce"
