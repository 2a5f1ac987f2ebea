"""``defib run --confirm``: rerun the script with a candidate fix and check the collapse is gone.

The rerun is the user's own command, stopped after ``steps`` optimizer steps,
with the fix applied inside it (see :mod:`defib.fixes.base`). Before and
after are compared at the same step: the prediction spread against the
targets' (the number the flatline is judged on) and the loss against the
constant-predictor baseline. A run has collapsed when its predictions are
flat (spread below the flat threshold, or a flatline verdict) or when its loss
is still within ``NOT_LEARNING`` of the constant predictor's: predictions that
vary but explain under a tenth of what the mean leaves (R^2 < 0.1 for MSE)
are no better than flat. A fix is reported ``recovered`` only when the run
had collapsed and the rerun's predictions vary (spread above the threshold,
no flatline) with a loss clearly below the baseline and below the run's own,
or, for a slow start, a loss below both that the rerun's own diagnosis (the
same any run gets) calls healthy; a spread still under the threshold passes
only with that healthy diagnosis and a loss clearly below the baseline (a
classifier whose probabilities learn before its argmax moves off the majority
class): "the finding went away" is not enough, the model must learn again.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Callable

from defib.fixes.base import plan
from defib.rules.thresholds import FLAT_SPREAD, NOT_LEARNING

# a rerun its own diagnosis calls healthy is a slow start, not a collapse, below this share of the constant
# predictor's loss: halfway from NOT_LEARNING to the baseline, where a few percent are still a window's noise
SLOW_START = (1.0 + NOT_LEARNING) / 2
SAME_TARGET = 1e-9  # a constant-predictor loss this small: every target in the window is the same
RunFn = Callable[[dict[str, str], int], tuple[int, dict[str, Any]]]


def candidates(report: dict[str, Any], limit: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(finding, fix spec) for the ranked causes that have a fix, at most ``limit``."""
    out = []
    for finding in report.get("findings", []):
        if finding.get("cause") and finding.get("severity") in ("warning", "error"):
            spec = plan(finding)
            if spec is not None:
                out.append((finding, spec))
        if len(out) >= limit:
            break
    return out


def figures(report: dict[str, Any], at_step: int | None = None) -> dict[str, Any]:
    """Spread ratio, loss and baseline at ``at_step`` (or the last recorded step) from a report's signals."""
    sig = report.get("signals") or {}

    def value(name: str) -> float | None:
        series = sig.get(name) or {}
        pairs = [(s, v) for s, v in zip(series.get("step", []), series.get("value", []))
                 if at_step is None or s <= at_step]
        return pairs[-1][1] if pairs else None

    return {"step": min(at_step or report.get("steps_observed", 0), report.get("steps_observed", 0)),
            "spread_ratio": value("spread"), "loss": value("loss"), "baseline_loss": value("baseline"),
            "verdict": report.get("verdict")}


def _collapsed(fig: dict[str, Any]) -> bool:
    """Flat predictions, or a loss no better than (within NOT_LEARNING of) always predicting the mean / the prior."""
    spread, rel = fig.get("spread_ratio"), _rel_loss(fig)
    flat = fig.get("verdict") == "flatlined" or (spread is not None and math.isfinite(spread) and spread < FLAT_SPREAD)
    return flat or (rel is not None and rel >= NOT_LEARNING)


def _rel_loss(fig: dict[str, Any]) -> float | None:
    """Loss over the constant predictor's; None where the ratio means nothing (a negative "loss": NLL on logits).

    A baseline of 0 means every target in the window was the same (one class
    per batch from a loader sorted by label): the constant predictor is exact
    there, so any loss above it is infinitely worse and the predictions'
    spread is undefined. Such a run cannot be told from a flat one, and counts
    as collapsed; a fix recovers it only if the rerun's windows hold several
    targets again and its loss beats their constant predictor.
    """
    loss, base = fig.get("loss"), fig.get("baseline_loss")
    if loss is None or base is None or not math.isfinite(loss) or loss < 0 or base < -SAME_TARGET:
        return None
    if base <= SAME_TARGET:
        return math.inf if loss > SAME_TARGET else None
    return loss / base


def judge(before: dict[str, Any], after: dict[str, Any], compare_loss: bool = True) -> tuple[bool, str]:
    """Did the fix restore the predictions? (recovered, the reason in words).

    ``compare_loss=False`` for a fix that changes what the loss measures (class
    weights): then the predictions' spread alone decides, with no flatline.
    """
    if not compare_loss:
        before, after = _spread_only(before), _spread_only(after)
    if not _collapsed(before):
        return False, "the run had not collapsed by this step, so there is no recovery to prove"
    spread = after.get("spread_ratio")
    rb, ra = _rel_loss(before), _rel_loss(after)
    if after.get("verdict") == "flatlined" or spread is None or not math.isfinite(spread) or spread < FLAT_SPREAD:
        if _learning_under_a_narrow_spread(after, ra, rb):
            return True, (f"spread {_fmt(before.get('spread_ratio'))} -> {_fmt(spread)} of the targets', still "
                          f"narrow, but the rerun is healthy and its loss is {ra:.3g} of the constant predictor's "
                          f"(learning below {NOT_LEARNING}), below the run's {_fmt(rb)}")
        return False, f"predictions still flat with the fix (spread {_fmt(spread)} of the targets')"
    if rb is not None and ra is not None and ra >= rb:
        return False, f"predictions vary again but the loss is no better ({ra:.3g} vs {rb:.3g} of the baseline)"
    if ra is not None and ra >= NOT_LEARNING:
        if after.get("verdict") == "healthy" and ra < SLOW_START and (rb is None or ra < rb):
            # a slow start (a Huber loss, a small learning rate that fits the horizon): the rerun's own diagnosis,
            # the same one any run gets, reads it as learning; NOT_LEARNING is for runs it does not call healthy
            return True, (f"spread {_fmt(before.get('spread_ratio'))} -> {_fmt(spread)} of the targets' and the "
                          f"rerun is healthy: its loss is {ra:.3g} of the constant predictor's, "
                          f"{'below the run' + chr(39) + 's ' + format(rb, '.3g') if rb is not None else 'and learning'}")
        return False, (f"predictions vary but the loss is still {ra:.3g} of the constant predictor's "
                       f"(learning starts below {NOT_LEARNING} unless the rerun's own diagnosis is healthy)")
    if rb == math.inf:
        return True, (f"each window held one target before (the constant predictor was exact); with the fix the "
                      f"predictions spread {_fmt(spread)} of the targets' (flat below {FLAT_SPREAD}) and the loss is "
                      f"{_fmt(ra)} of the baseline")
    loss_note = f"; loss {rb:.3g} -> {ra:.3g} of the baseline" if rb is not None and ra is not None else ""
    return True, (f"spread {_fmt(before.get('spread_ratio'))} -> {_fmt(spread)} of the targets' "
                  f"(flat below {FLAT_SPREAD}){loss_note}")


def _learning_under_a_narrow_spread(after: dict[str, Any], ra: float | None, rb: float | None) -> bool:
    """A spread under FLAT_SPREAD that is not a flatline: the predictions vary, the rerun's own diagnosis calls it
    healthy, and its loss is clearly below the constant predictor's (under NOT_LEARNING) and below the run's.

    S001 draws the flatline the same way (a narrow spread with a loss that is
    not clearly below the constant predictor's). A classifier early in training
    is the case: its probabilities already follow the input (cross-entropy 0.88
    of the prior's) while its argmax still names the majority class for most
    inputs (predicted-class entropy 0.09 of the labels'), as a healthy run's
    first hundred steps can. One predicted class for every input (spread 0) is
    flat whatever the loss.
    """
    spread = after.get("spread_ratio")
    return (after.get("verdict") == "healthy" and spread is not None and math.isfinite(spread) and spread > 0
            and ra is not None and ra < NOT_LEARNING and (rb is None or ra < rb))


def _spread_only(fig: dict[str, Any]) -> dict[str, Any]:
    return dict(fig, loss=None)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"


def confirm(report: dict[str, Any], run: RunFn, *, steps: int, max_runs: int = 2,
            say: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Rerun with the fix of each candidate cause (best first) until one recovers; at most ``max_runs`` reruns.

    ``run(extra_env, steps)`` runs the user's command under defib and returns
    (exit code, report). Each entry of the result is one ``confirmed_fixes``
    item of the JSON contract.
    """
    out: list[dict[str, Any]] = []
    steps = max(1, min(steps, int(report.get("steps_observed") or 0) or steps))
    before = figures(report, steps)
    if not _collapsed(before):
        say(f"defib: --confirm: the run had not collapsed by step {steps} (its predictions vary and its loss is below "
            f"{NOT_LEARNING} of the constant predictor's), so no rerun can prove a fix")
        return out
    for i, (finding, spec) in enumerate(candidates(report, max_runs), 1):
        say(f"defib: confirming the fix for {spec['cause']} ({spec['description']}): "
            f"rerun {i}/{max_runs}, {steps} optimizer steps")
        began = time.perf_counter()
        code, rerun = run({"DEFIB_FIX": json.dumps(spec)}, steps)
        seconds = time.perf_counter() - began
        after = figures(rerun, steps)
        recovered, why = judge(before, after, spec.get("compare_loss", True))
        errors = [f for f in rerun.get("findings", []) if f.get("code") == "X001"]
        if errors and not recovered:
            why += "; the fix raised inside the rerun: " + "; ".join(errors[0].get("evidence", {}).get("errors", [])[:2])
        out.append({"cause": spec["cause"], "code": finding.get("code"), "fix": spec["description"],
                    "recovered": recovered, "reason": why, "steps": steps, "seconds": round(seconds, 1),
                    "rerun_exit": code, "before": _public(before), "after": _public(after),
                    "still_found": any(f.get("cause") == spec["cause"] for f in rerun.get("findings", []))})
        say(f"defib: {'confirmed' if recovered else 'not confirmed'}: {why} ({seconds:.0f} s)")
        if recovered:
            break
    return out


def _public(fig: dict[str, Any]) -> dict[str, Any]:
    keys = ("step", "spread_ratio", "loss", "baseline_loss", "verdict")
    return {k: (round(fig[k], 6) if isinstance(fig.get(k), float) else fig.get(k)) for k in keys}
