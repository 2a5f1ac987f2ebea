"""O002: learning rate so low that nothing moves."""

from __future__ import annotations

import math
import statistics

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num
from defib.rules.measures import not_learning
from defib.rules.optim.common import lr_now, peak_lr
from defib.signals.run import Signals


@register
class LearningRateTooLow(Rule):
    """Updates are a vanishing fraction of the weights, by the configured learning rate.

    What it detects:
        A median update/weight ratio below ``min_ratio`` over all groups that
        receive gradients (or too small for the run's horizon: below
        ``min_total_move`` summed over the planned steps while the loss stays
        at the constant predictor's), while the learning rate is still at its configured
        value (so it is not a schedule that decayed it: see O003) and the
        loss scale is ordinary (see L005). In a model wrapped by PEFT only the
        LoRA adapters are judged, by the change they make to their layers
        (``||s (B'A' - BA)|| / ||W||``, ``s = lora_alpha / r``), and a scale
        ``s`` below ``min_lora_scale`` is named as what keeps them at zero.

    Why it flattens predictions:
        A freshly initialised head outputs nearly the same small value for
        every input. If it barely moves, it keeps doing so: the predictions
        stay flat at their initial value and the loss stays at its initial
        level.

    Example:
        ``AdamW(model.parameters(), lr=1e-8)`` (a typo for 1e-5);
        ``LoraConfig(r=64, lora_alpha=0.01, ...)``.

    Fix:
        ``lr=2e-5`` for BERT-family fine-tuning (1e-5 to 5e-5), 1e-4 to 1e-3
        for LoRA adapters; ``lora_alpha`` of r to 2r; run ``defib probe`` for
        a learning-rate range test.
    """

    code = "O002"
    cause = "optim.lr_too_low"
    title = "Learning rate too low for what must move"
    severity = Severity.ERROR
    needs = ("optim",)

    # median update/weight ratio below this: ~100x under a healthy step (1e-4..5e-4 measured)
    min_ratio = thresholds.LR_TOO_LOW_UPDATE
    # Or too small for the run's length: over the planned run (or the steps seen, when no plan is stated) the
    # weights move by less than min_total_move of their norm in all (what 2-10 healthy steps do), each step is
    # at most max_horizon_ratio (10x under a healthy one), and after the grace period the loss is still no
    # better than the constant predictor's. An Adam learning rate handed to plain SGD (3e-5: about 3e-6 per
    # step) is the common way there.
    min_total_move = thresholds.HEALTHY_UPDATE
    max_horizon_ratio = thresholds.HEALTHY_UPDATE / 10
    adam_range = 1e-3   # a learning rate at most this with SGD is one chosen for Adam
    schedule_share = 0.1                        # current lr below this share of the configured one: the schedule's doing
    min_step = 3
    loss_scale = thresholds.LOSS_SCALE          # a loss scaled below 1 / this explains small steps: L005's
    healthy_update = thresholds.HEALTHY_UPDATE  # the update ratio of a healthy step: the unit of the messages
    # LoRA scale lora_alpha / r below this is what holds the adapters back: people set alpha to r..4r (scale 1-4;
    # peft's default 8 / 8 is 1, rsLoRA's alpha / sqrt(r) likewise), and the layer's change is linear in it
    min_lora_scale = 0.1

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        if s.step < self.min_step or not o.groups_with_grad:
            return None
        lr, peak = lr_now(o), peak_lr(o)
        if lr is None or not peak:
            return None
        # judge the steps taken at (near) the configured rate, so a schedule's warmup or decay is not blamed here
        near_peak = {st for st, v in o.lr.pairs() if v >= 0.5 * peak}
        # a PEFT model trains its adapters beside frozen weights (a head in modules_to_save may move as it likes)
        series = [v for g, v in o.update_ratio.items() if g in o.adapter_groups or not o.adapter_groups]
        ratios = [v for sr in series for st, v in sr.pairs() if st in near_peak and math.isfinite(v)]
        every = [v for sr in series for _, v in sr.pairs() if math.isfinite(v)]
        ratio = statistics.median(ratios or every) if ratios or every else None
        if ratio is None:
            return None
        horizon = max(o.planned_steps or 0, s.step)
        short = ratio < self.max_horizon_ratio and ratio * horizon < self.min_total_move and not_learning(s)
        if ratio >= self.min_ratio and not short:
            return None
        if not ratios and lr < self.schedule_share * peak:
            return None
        if s.loss is not None and s.loss.scale_factor is not None and s.loss.scale_factor < 1 / self.loss_scale:
            return None
        evidence = {"update_ratio_median": ratio, "lr": lr, "configured_lr": peak, "optimizer": o.optimizer}
        times = f"about {self.healthy_update / max(ratio, 1e-30):.0f}x less than a healthy fine-tuning step"
        if o.adapter_groups:
            return self._adapters(s, ratio, times, evidence)
        if ratio >= self.min_ratio:  # too small for this run's length, not in itself
            evidence.update(planned_steps=o.planned_steps, horizon_steps=horizon, total_move=ratio * horizon)
            sgd = o.optimizer == "SGD" and peak <= self.adam_range
            return self.finding(
                f"Each step changes the weights by {ratio:.2g} of their norm (median), {times}: over the run's "
                f"{horizon} steps they move by {ratio * horizon:.2g} of it in all, less than a few healthy steps do, "
                f"and the loss is still no better than the constant predictor's. "
                + (f"The learning rate {num(peak)} is one for Adam; plain SGD takes steps of lr x gradient, "
                   "hundreds of times smaller." if sgd else f"Learning rate {num(peak)} with {o.optimizer}."),
                confidence=0.8, where=o.where if sgd else (o.lr_where or o.where), evidence=evidence,
                fix="torch.optim.AdamW(model.parameters(), lr=2e-5)" if sgd
                else "lr=2e-5  # typical for BERT-family fine-tuning; or train longer")
        return self.finding(
            f"Each step changes the weights by {ratio:.2g} of their norm (median), {times}; learning rate "
            f"{num(peak)} at its peak with {o.optimizer}.",
            confidence=0.85, where=o.lr_where or o.where, evidence=evidence,
            fix="lr=2e-5  # typical for BERT-family fine-tuning")

    def _adapters(self, s: Signals, ratio: float, times: str, evidence: dict) -> Finding:
        """LoRA adapters left at (near) zero: by their scale lora_alpha / r when it is tiny, else by the lr."""
        o, m = s.optim, s.model
        scale = m.lora_scale if m is not None else None
        evidence.update(adapter_groups=o.adapter_groups, lora_scale=scale)
        said = (f"The LoRA adapters change their layers by {ratio:.2g} of the weights' norm per step (median), "
                f"{times}")
        if scale is not None and scale < self.min_lora_scale:
            evidence["lever"] = "lora_alpha"
            return self.finding(
                f"{said}: their scale lora_alpha / r is {scale:.2g}, so even a full step of the factors barely moves "
                f"a layer (learning rate {num(evidence['configured_lr'])}).",
                confidence=0.85, where=m.lora_scale_where or m.adapter_where, evidence=evidence,
                fix="LoraConfig(r=8, lora_alpha=16, ...)  # lora_alpha of r to 2r")
        evidence["lever"] = "lr"
        return self.finding(
            f"{said}; learning rate {num(evidence['configured_lr'])} at its peak with {o.optimizer}.",
            confidence=0.85, where=o.lr_where or o.where, evidence=evidence,
            fix="lr=2e-4  # LoRA adapters train at 1e-4 to 1e-3")
