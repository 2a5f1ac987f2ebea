"""O009: NaN or Inf in the loss, the gradients or the weights."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals

_ORIGIN_ORDER = ("loss", "grad", "weight")


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
        update, and parameters kept in float16 under a plain optimizer.

    Why it flattens predictions:
        One NaN gradient step turns every weight it touches into NaN; from
        then on every input gets the same output (NaN, or the same class
        after an argmax over NaNs). float16 weights updated by a plain Adam
        underflow in its second moment and overflow in its update.

    Example:
        ``loss = -(y * torch.log(p)).mean()`` with ``p`` reaching 0; or
        ``model.half()`` followed by ``AdamW``.

    Fix:
        Use the library's numerically safe losses (``cross_entropy``,
        ``binary_cross_entropy_with_logits``), keep weights in float32 and use
        ``torch.autocast`` for mixed precision, clip gradients.
    """

    code = "O009"
    cause = "optim.nonfinite"
    title = "NaN or Inf in the loss, gradients or weights"
    severity = Severity.ERROR
    needs = ("optim",)

    def check(self, s: Signals) -> Finding | None:
        o = s.optim
        half = [d for d in o.param_dtypes if d in ("float16", "bfloat16")]
        if not o.nonfinite and not half:
            return None
        if o.nonfinite:
            first = min(o.nonfinite.items(), key=_origin_first)
            where = s.loss.where if first[0] == "loss" and s.loss else o.backward_where or o.step_where
            what = ", ".join(f"{k} at step {v}" for k, v in sorted(o.nonfinite.items(), key=_origin_first))
            msg = f"Non-finite values appeared: {what}."
            if half:
                msg += f" Parameters are {', '.join(half)} under {o.optimizer}."
            return self.finding(msg, confidence=0.95, where=where if not half else (o.where or where),
                                evidence={"first_nonfinite": dict(o.nonfinite), "param_dtypes": o.param_dtypes},
                                fix="Keep weights in float32 (use torch.autocast for speed), use numerically safe "
                                    "losses, clip gradients: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)")
        return self.finding(
            f"Parameters are {', '.join(half)} and are updated by {o.optimizer} directly: its moments underflow and "
            "updates overflow in half precision.",
            confidence=0.6, severity=Severity.WARNING, where=o.where,
            evidence={"param_dtypes": o.param_dtypes, "optimizer": o.optimizer},
            fix="model.float(); use torch.autocast(device_type, dtype=torch.bfloat16) for the forward pass")
