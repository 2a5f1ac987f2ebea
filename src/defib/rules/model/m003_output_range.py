"""M003: an output activation whose range cannot reach the targets."""

from __future__ import annotations

import numpy as np

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.measures import bce_regression
from defib.signals.run import Signals

RANGES = {"Sigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0), "Relu": (0.0, float("inf")), "Hardtanh": (-1.0, 1.0),
          "Softplus": (0.0, float("inf")), "Elu": (-1.0, float("inf"))}


@register
class OutputRange(Rule):
    """A bounded activation produces the regression output, and the targets lie outside its range.

    What it detects:
        The autograd graph right before a regression loss (sigmoid, tanh,
        ReLU, ...), or a bounded score the loss is known to compare with the
        targets' values (the cosine similarity of sentence-transformers'
        ``CosineSimilarityLoss``, -1..1; the sigmoid inside BCE when it
        scores one output per row against continuous targets, as
        sentence-transformers' ``CrossEncoder`` does with ``num_labels=1``),
        the share of targets outside that range, and the share of
        predictions pinned at its bound.

    Why it flattens predictions:
        Targets above a sigmoid's 1 pull every output to 1: the activation
        saturates, its gradient vanishes, and every input gets the same
        prediction at the bound. A ReLU output whose pre-activations go
        negative is stuck at 0 with zero gradient (a dead output).

        A cosine trained towards 5 pulls every pair of embeddings towards
        the same direction: all texts end up alike, every similarity near 1.

        The cause is the output's range, not the targets' scale
        (``data.target_scale``, which is about a head too slow to reach
        targets it could reach): no amount of training brings a sigmoid or
        a cosine to 5.

    Example:
        ``return torch.sigmoid(self.head(cls))`` trained on STS-B scores 0-5;
        ``CosineSimilarityLoss(model)`` on STS-B's 0-5 scores, not divided by 5;
        ``CrossEncoder(path, num_labels=1)`` (BCE-with-logits) on the same scores.

    Fix:
        Use a plain linear output for regression (standardise the targets),
        or scale the activation to the target range:
        ``lo + (hi - lo) * torch.sigmoid(x)``. For a cosine, put the labels
        in its range (``score / 5``), or use a loss that only compares the
        labels' order (``CoSENTLoss``).
    """

    code = "M003"
    cause = "model.output_range"
    title = "Output activation cannot reach the targets"
    severity = Severity.ERROR
    needs = ("loss", "preds")

    min_outside = 0.2     # share of targets outside the activation's range
    pinned_share = 0.5    # share of predictions at the bound (dead ReLU, saturated sigmoid)
    bound_tol = 1e-3

    def check(self, s: Signals) -> Finding | None:
        ls, p = s.loss, s.preds
        if not p.recent_targets:
            return None
        if bce_regression(s):
            return self._judge(ls, p, f"sigmoid ({ls.fn})", 0.0, 1.0, logits=ls.fn.endswith("with_logits"))
        if ls.family != "regression":
            return None
        act = next((n.replace("Backward0", "").replace("Backward1", "") for n in ls.producer
                    if n.replace("Backward0", "").replace("Backward1", "") in RANGES), None)
        if act is not None:
            lo, hi = RANGES[act]
        elif ls.bounded_input is not None:
            act, lo, hi = ls.bounded_input
        else:
            return None
        return self._judge(ls, p, act, lo, hi)

    def _judge(self, ls, p, act: str, lo: float, hi: float, logits: bool = False) -> Finding | None:
        """``logits``: the recorded predictions are the logits the loss squashes itself (BCE-with-logits)."""
        y = np.asarray(p.recent_targets)
        x = np.asarray(p.recent_preds) if p.recent_preds else np.array([])
        if logits:
            x = 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))
        outside = float(((y < lo - self.bound_tol) | (y > hi + self.bound_tol)).mean())
        pinned = float(((np.abs(x - lo) < self.bound_tol) | (np.abs(x - hi) < self.bound_tol)).mean()) if x.size else 0.0
        if outside < self.min_outside and pinned < self.pinned_share:
            return None
        if act in RANGES:
            what, where = f"The regression output comes from a {act}", ls.producer_where or ls.where
            fix = "return self.head(cls).squeeze(-1)  # linear output; standardise the targets instead"
        else:  # a score the loss computes itself (a cosine, BCE's sigmoid): fix the targets' scale where they are made
            what, where = f"The loss compares a {act}", ls.label_where or ls.module_where or ls.where
            fix = (f"labels / {y.max():.3g}  # into the {act}'s range; or a loss that uses only their order "
                   f"(CoSENTLoss)") if act.startswith("cosine") else \
                f"labels / {y.max():.3g}  # BCE compares probabilities in 0..1; or MSE on the raw output"
        return self.finding(
            f"{what} (range {lo:g}..{hi:g}) with recent targets ranging {y.min():.3g}..{y.max():.3g}; "
            f"{outside:.0%} of the targets lie outside it and {pinned:.0%} of recent predictions sit at its bound.",
            confidence=0.9, where=where,
            evidence={"activation": act, "range": [lo, hi], "targets_outside": round(outside, 4),
                      "predictions_at_bound": round(pinned, 4),
                      "target_range": [p.target_min, p.target_max],
                      # whose bound it is: an activation the model applies (drop it), or one the loss itself
                      # applies (a cosine, BCE's sigmoid), which only targets put in its range can meet
                      "bound_of": "activation" if act in RANGES else "loss",
                      "loss_fn": ls.fn if ls.source == "call" else None},  # a torch loss function's name
            fix=fix)

