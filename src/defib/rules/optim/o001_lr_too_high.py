"""O001: learning rate so high that each step rewrites the weights."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num
from defib.rules.measures import LR_SIZED_STEPS, collapsed, not_learning
from defib.rules.optim.common import peak_lr, peak_update_ratio
from defib.signals.run import Signals


@register
class LearningRateTooHigh(Rule):
    """Updates are a large fraction of the weights they change.

    What it detects:
        The update/weight ratio ``|w_after - w_before| / |w_before|`` of the
        encoder's layers, sampled every few steps; the median over layers at
        the worst sampled step (without warmup, the first steps are the
        largest and do the damage). A healthy fine-tuning step
        changes a weight matrix by about 1e-4 to 1e-3 of its norm (with Adam:
        roughly learning rate / RMS of the weights; 5e-5 on BERT gives ~1e-3).
        When the damage is done early (in warmup) the gradients vanish and
        the measured steps shrink; for optimizers whose steps are about lr
        per weight (Adam and friends) the nominal ratio, configured lr / RMS
        of the encoder's weight matrices, then stands in for it, if the
        predictions are flat or the loss is stuck at the baseline.

    Why it flattens predictions:
        Steps that move weights by a percent or more each time erase what
        pre-training put in them within a few dozen steps. The [CLS]
        representations of different inputs become nearly identical, the
        head can only fit the mean, and the loss settles at the
        constant-predictor baseline. Without warmup the first Adam steps are
        the largest, so this often happens in the first epoch.

    Example:
        ``AdamW(model.parameters(), lr=1e-3)`` on BERT without warmup.

    Fix:
        Use 1e-5 to 5e-5 for the encoder with 5-10% linear warmup
        (``get_linear_schedule_with_warmup``); a higher rate only for a fresh
        head, in its own parameter group.
    """

    code = "O001"
    cause = "optim.lr_too_high"
    title = "Learning rate too high (often with no warmup)"
    severity = Severity.ERROR
    needs = ("optim",)

    # encoder update/weight ratio (median over layers) at its worst step: 10x a healthy one
    max_ratio = thresholds.LR_TOO_HIGH_UPDATE
    min_samples_step = 2                        # steps before judging
    loss_scale = thresholds.LOSS_SCALE          # a plain optimizer's steps under a loss scaled this much are L005's
    healthy_update = thresholds.HEALTHY_UPDATE  # the update ratio of a healthy step: the unit of the messages

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        if s.step < self.min_samples_step:
            return None
        ratio = peak_update_ratio(o)
        if ratio is None or ratio < self.max_ratio:
            return self._nominal(s)
        scale = s.loss.scale_factor if s.loss and s.loss.scale_factor else 1.0
        if not o.optimizer.startswith(LR_SIZED_STEPS) and \
                (scale >= self.loss_scale or (s.loss and s.loss.reduction == "sum")):
            return None  # the loss scale drives these steps: L005
        sev = Severity.ERROR if collapsed(s) or "weight" in o.nonfinite or ratio >= 10 * self.max_ratio \
            else Severity.WARNING
        lr = peak_lr(o)
        return self.finding(
            f"At its worst sampled step the encoder's weights changed by {ratio:.2g} of their norm (median over layers), about "
            f"{ratio / self.healthy_update:.0f}x a healthy fine-tuning step; learning rate {num(lr)} with {o.optimizer}.",
            confidence=0.85, severity=sev, where=o.lr_where or o.where,
            evidence={"update_ratio_peak": ratio, "lr": lr, "optimizer": o.optimizer},
            fix="lr=2e-5 with warmup: get_linear_schedule_with_warmup(opt, int(0.1 * total_steps), total_steps)")

    def _nominal(self, s: Signals) -> Finding | None:
        """Adam-like steps are about lr per weight: lr / weight RMS is the step the run was set up to take."""
        o = s.optim
        lr, rms = peak_lr(o), o.encoder_weight_rms
        if not o.optimizer.startswith(LR_SIZED_STEPS) or not lr or not rms or not (collapsed(s) or not_learning(s)):
            return None
        if o.adapter_groups:  # Adam moves LoRA factors beside frozen weights: their measured update is the step taken
            return None
        nominal = lr / rms
        if nominal < self.max_ratio:
            return None
        return self.finding(
            f"{o.optimizer} moves each weight by about the learning rate per step: lr {num(lr)} against an RMS of "
            f"{num(rms)} for the encoder's weights is {nominal:.2g} of their scale per step, about {nominal / self.healthy_update:.0f}x "
            "a healthy fine-tuning step; the predictions collapsed and the measured steps have shrunk since.",
            confidence=0.75, severity=Severity.ERROR if collapsed(s) else Severity.WARNING,
            where=o.lr_where or o.where,
            evidence={"update_ratio_peak": peak_update_ratio(o), "nominal_update_ratio": round(nominal, 6),
                      "lr": lr, "encoder_weight_rms": round(rms, 6), "optimizer": o.optimizer},
            fix="lr=2e-5 with warmup: get_linear_schedule_with_warmup(opt, int(0.1 * total_steps), total_steps)")
