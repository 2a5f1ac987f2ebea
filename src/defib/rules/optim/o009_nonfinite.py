"""O009: NaN or Inf in the loss, the gradients or the weights."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import rnd
from defib.signals.run import OptimSignals, Signals

_ORIGIN_ORDER = ("loss", "grad", "weight")
TARGET_FIX = "Keep the targets' transform finite: torch.log1p(y) or torch.log(y + eps), or drop the rows it cannot map"


def _origin_first(item: tuple[str, int]) -> tuple[int, int]:
    """Sort key of (what, step): by step, and within a step the loss, then the gradients it made, then the
    weights they updated, so that a tie names the origin (the order the values were read in says nothing)."""
    what, step = item
    return step, _ORIGIN_ORDER.index(what) if what in _ORIGIN_ORDER else len(_ORIGIN_ORDER)


@register
class NonFinite(Rule):
    """A NaN or Inf appeared in the loss, the gradients or the weights.

    What it detects:
        The first step with a non-finite loss value, gradient norm or weight
        update, parameters kept in float16 under a plain optimizer, and a
        ``GradScaler`` that keeps skipping the optimizer's step because the
        unscaled gradients hold inf or NaN every time.

    Why it flattens predictions:
        One NaN gradient step turns every weight it touches into NaN; from
        then on every input gets the same output (NaN, or the same class
        after an argmax over NaNs). float16 weights updated by a plain Adam
        underflow in its second moment and overflow in its update. Under
        mixed precision ``GradScaler`` protects the weights by skipping such
        steps and halving its scale: if every step has a NaN, no step is ever
        taken, the weights stay where they started (a fresh head's flat
        output included) and the scale sinks towards zero.

        Targets made infinite by their own transform (``torch.log(score)``
        with scores of 0) make the loss infinite from the first batch that
        holds one: ``where`` is then the line that made the targets.

    Example:
        ``loss = -(y * torch.log(p)).mean()`` with ``p`` reaching 0; or
        ``model.half()`` followed by ``AdamW``; under a ``GradScaler``,
        ``torch.where(pred > 0, pred.sqrt(), pred)`` (the branch not taken
        still back-propagates NaN).

    Fix:
        Use the library's numerically safe losses (``cross_entropy``,
        ``binary_cross_entropy_with_logits``), keep weights in float32 and use
        ``torch.autocast`` for mixed precision, clip gradients. Under a
        ``GradScaler`` that skips every step, find the operation whose
        gradient is inf/NaN (``torch.autograd.set_detect_anomaly(True)`` for
        one step) and clamp its input.
    """

    code = "O009"
    cause = "optim.nonfinite"
    title = "NaN or Inf in the loss, gradients or weights"
    severity = Severity.ERROR
    needs = ("optim",)

    # a healthy GradScaler skips a few steps while its scale (65536 at first) halves down to what the gradients
    # allow; the latest this many in a row, or as many spread over this share of all steps, never settle
    scaler_streak = 8
    scaler_share = 0.9

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        half = [d for d in o.param_dtypes if d in ("float16", "bfloat16")]
        scaler = self._scaler_stuck(o)
        if scaler is not None and not o.nonfinite:
            return self.finding(
                f"{scaler['sentence']}: the unscaled gradients held inf or NaN at each of them, so the optimizer "
                "never took those steps and the weights did not move.",
                confidence=0.9, where=o.scaler_where or o.step_where, evidence=scaler["evidence"],
                fix="Find the operation whose gradient is inf/NaN (torch.autograd.set_detect_anomaly(True) for one "
                    "step); a torch.where over sqrt/log computes both branches: clamp the input first")
        if not o.nonfinite and not half:
            return None
        if o.nonfinite:
            first = min(o.nonfinite.items(), key=_origin_first)
            where = s.loss.where if first[0] == "loss" and s.loss else o.backward_where or o.step_where
            what = ", ".join(f"{k} at step {v}" for k, v in sorted(o.nonfinite.items(), key=_origin_first))
            msg = f"Non-finite values appeared: {what}."
            infinite = s.preds.target_infinite if s.preds else 0
            if infinite and first[0] == "loss":
                # the loss was infinite because its targets were: the line that made the targets overflowed
                msg += (f" {infinite} targets reaching the loss are infinite: their transform overflowed (a log of 0, "
                        "a division by 0).")
                where = (s.loss.label_where or where) if s.loss else where
            if half:
                msg += f" Parameters are {', '.join(half)} under {o.optimizer}."
            evidence = {"first_nonfinite": dict(o.nonfinite), "param_dtypes": o.param_dtypes,
                        "infinite_targets": infinite}
            if scaler is not None:
                msg += f" {scaler['sentence']}."
                evidence.update(scaler["evidence"])
            return self.finding(msg, confidence=0.95, where=where if not half else (o.half_cast_where or o.where or where),
                                evidence=evidence, fix=TARGET_FIX if infinite and first[0] == "loss" else
                                "Keep weights in float32 (use torch.autocast for speed), use numerically safe "
                                "losses, clip gradients: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)")
        return self.finding(
            f"Parameters are {', '.join(half)} and are updated by {o.optimizer} directly: its moments underflow and "
            "updates overflow in half precision.",
            confidence=0.6, severity=Severity.WARNING, where=o.half_cast_where or o.where,
            evidence={"param_dtypes": o.param_dtypes, "optimizer": o.optimizer},
            fix="model.float(); use torch.autocast(device_type, dtype=torch.bfloat16) for the forward pass")

    def _scaler_stuck(self, o: OptimSignals) -> dict | None:
        """A GradScaler that skipped most steps, or the latest ``scaler_streak`` in a row: the sentence and evidence."""
        skipped, steps = o.scaler_skipped, o.scaler_steps
        mostly = skipped >= self.scaler_streak and skipped >= self.scaler_share * steps
        if o.scaler_skip_streak < self.scaler_streak and not mostly:
            return None
        sentence = f"GradScaler skipped {skipped} of {steps} steps"
        if o.scaler_scale_first is not None and o.scaler_scale_last is not None:
            sentence += f", scale fell from {o.scaler_scale_first:.3g} to {o.scaler_scale_last:.3g}"
        return {"sentence": sentence,
                "evidence": {"scaler_skipped": skipped, "scaler_steps": steps, "scaler_skip_streak": o.scaler_skip_streak,
                             "scale_first": rnd(o.scaler_scale_first), "scale_last": rnd(o.scaler_scale_last)}}
