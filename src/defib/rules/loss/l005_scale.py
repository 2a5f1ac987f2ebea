"""L005: the loss is scaled so far from a per-example mean that updates explode or vanish."""

from __future__ import annotations

import math

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.measures import ADAPTIVE
from defib.signals.run import Signals



@register
class LossScale(Rule):
    """The loss that is back-propagated is far larger or smaller than a mean loss.

    What it detects:
        The ratio between the tensor passed to ``backward()`` and the mean
        per-example loss (``reduction="sum"`` counts as the batch size), with
        the optimizer type; for adaptive optimizers, gradients so small that
        Adam's epsilon dominates them.

    Why it flattens predictions:
        Plain SGD's step is ``lr x gradient``: a loss 1000x too large is a
        learning rate 1000x too large, which throws the weights into a
        saturated region where every input gets the same output; a loss
        divided away freezes training. Adam normalises the gradient scale,
        except when it falls below ``eps``, where updates vanish.

    Example:
        ``loss = F.mse_loss(pred, y, reduction="sum")`` with SGD at lr 0.01,
        or ``(loss * 1000).backward()``.

    Fix:
        Back-propagate the mean loss (``reduction="mean"``), divide by the
        number of accumulation steps only, and tune the learning rate instead
        of the loss scale.
    """

    code = "L005"
    cause = "loss.scale"
    title = "Loss scaled so that updates explode or vanish"
    severity = Severity.ERROR
    needs = ("loss", "optim")

    max_factor = thresholds.LOSS_SCALE          # loss scale above this (or below its inverse) matters for SGD-like optimizers
    batch_factor = 8.0                          # a sum over a batch (or a constant this large) ...
    max_update = thresholds.LR_TOO_HIGH_UPDATE  # ... counts once some layer's update/weight ratio exceeds this
    adam_eps = 1e-8                             # Adam's default epsilon
    eps_margin = 10.0                           # gradient RMS under eps_margin x eps: Adam's updates are damped

    def check(self, s: Signals) -> Finding | None:
        ls, o = s.loss, s.optim
        factor = ls.scale_factor if ls.scale_factor and math.isfinite(ls.scale_factor) else 1.0
        k = _median(o.micro_batches) or 1
        factor *= k  # dividing by the accumulation steps is correct: undo it
        if ls.reduction == "sum" and ls.input_shape:
            factor *= max(1, ls.input_shape[0])
        adaptive = o.optimizer.startswith(ADAPTIVE)
        # reduction='sum' is set where the loss module is built (or at the call); another scale, at backward()
        where = (ls.module_where or ls.where) if ls.reduction == "sum" else (o.backward_where or ls.where)
        wild = max((v for series in o.update_ratio.values() for _, v in series.pairs() if math.isfinite(v)),
                   default=0.0)
        if not adaptive and (factor >= self.max_factor or factor <= 1 / self.max_factor
                             or (factor >= self.batch_factor and wild >= self.max_update)):
            return self.finding(
                f"The back-propagated loss is {factor:.3g}x a per-example mean loss"
                + (" (reduction='sum')" if ls.reduction == "sum" else "")
                + f", and {o.optimizer} scales its step with the gradient: an effective learning rate {factor:.3g}x "
                  "the one configured.",
                confidence=0.85, where=where,
                evidence={"scale_vs_mean": round(factor, 4), "reduction": ls.reduction, "optimizer": o.optimizer,
                          "max_update_ratio": wild},
                fix="Back-propagate the mean loss: F.mse_loss(pred, y)  # reduction='mean'")
        if adaptive and factor <= 1 / self.max_factor and o.grad_total.last is not None and o.n_trainable:
            rms = o.grad_total.last / math.sqrt(o.n_trainable)
            if rms < self.eps_margin * self.adam_eps:
                return self.finding(
                    f"The loss is scaled by {factor:.3g}; gradients average {rms:.2g} per weight, under "
                    f"{self.eps_margin:g}x Adam's epsilon ({self.adam_eps:g}), so updates vanish.",
                    confidence=0.8, where=where,
                    evidence={"scale_vs_mean": factor, "grad_rms": rms, "optimizer": o.optimizer},
                    fix="Back-propagate the plain mean loss.")
        return None


def _median(values: list[int]) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
