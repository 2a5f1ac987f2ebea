"""S002 and S001: a run still learning is a slow start, not a flatline; a run stuck at the baseline still is one.

The signals are built step by step as the watcher records them (a per-step
loss with batch noise, its 32-step mean, a spread averaged over batches, the
constant-predictor baseline) and the rules are evaluated every 10 steps, as
``LiveDiagnosis`` does. The slow start is modelled on ``run_glue.py`` on
STS-B at the Trainer's defaults (issue 15): at step 100 the predictions are
still narrow and the loss is only ~10% under the baseline, but falling.
"""

from __future__ import annotations

import math
import random

from defib.diagnosis import diagnose
from defib.rules import thresholds
from defib.rules.symptom.s001_flat_predictions import FlatPredictions
from defib.rules.symptom.s002_slow_start import SlowStart
from defib.signals.run import LossSignals, PredSignals, Signals

BASE = 2.13       # STS-B targets' variance: the constant predictor's MSE
NOISE = 0.5       # per-step MSE std / baseline for batches of 8 (sqrt(2 / 8))
STEPS = 100


def _run(loss_at, spread_at, steps: int = STEPS, seed: int = 0, noise: float = NOISE) -> Signals:
    """Signals after ``steps`` steps; loss_at(t) is the expected per-step loss, spread_at(t) the spread."""
    rng = random.Random(seed)
    p = PredSignals(task="regression", target_std=BASE ** 0.5)
    loss = LossSignals(fn="mse_loss", family="regression")
    recent: list[float] = []
    for t in range(1, steps + 1):
        value = max(0.05, loss_at(t) * (1 + noise * rng.gauss(0, 1)))
        loss.values.add(t, value)
        recent = (recent + [value])[-32:]
        p.loss_window.add(t, sum(recent) / len(recent))
        p.spread.add(t, spread_at(t) * (1 + 0.02 * rng.gauss(0, 1)))
        p.baseline.add(t, BASE)
    p.batch_std = p.spread.last * p.target_std
    return Signals(step=steps, loss=loss, preds=p)


def _at(run: Signals, step: int) -> Signals:
    """The signals as they stood after step ``step``."""
    p = PredSignals(task="regression", target_std=run.preds.target_std)
    loss = LossSignals(fn="mse_loss", family="regression")
    for dst, src in ((loss.values, run.loss.values), (p.loss_window, run.preds.loss_window),
                     (p.spread, run.preds.spread), (p.baseline, run.preds.baseline)):
        for st, v in src.pairs():
            if st <= step:
                dst.add(st, v)
    p.batch_std = p.spread.last * p.target_std
    return Signals(step=step, loss=loss, preds=p)


def _first_firing(rule, run: Signals) -> int | None:
    """The first evaluation step (every 10, as the live diagnosis) at which ``rule`` fires on the run so far."""
    return next((st for st in range(10, run.step + 1, 10) if rule.check(_at(run, st)) is not None), None)


def slow_start(t: int) -> float:
    return BASE * (1.031 - 0.0015 * t)      # a fresh head: at the baseline at first, 0.9 of it by step 87


def widening(t: int) -> float:
    return 0.01 * math.exp(t / 38)          # 0.14 of the targets' spread at step 100, growing as in run_glue.py


def stuck(t: int) -> float:
    return BASE                              # the constant predictor's loss, with batch noise


def flat(t: int) -> float:
    return 0.03                              # narrow and not moving


def fell_to_the_baseline(t: int) -> float:
    return BASE * (1 + 2.0 * 0.9 ** t)      # a collapse: from three times the baseline down to it, and no further


def shrinking(t: int) -> float:
    return max(0.005, 0.12 - 0.0012 * t)


def _first_step_before(run: Signals) -> int | None:
    """The step at which S001 fired before the trend test: its spread, level and plateau criteria alone."""
    return next((st for st in range(10, run.step + 1, 10) if FlatPredictions().flat_since(_at(run, st)) is not None),
                None)


def test_slow_start_is_not_a_flatline():
    # the first noise draw (batches of 8) that S001's criteria alone called a flatline at step 100
    end = next(r for r in (_run(slow_start, widening, seed=seed) for seed in range(20))
               if FlatPredictions().flat_since(r) is not None)
    assert end.preds.loss_window.last >= thresholds.NOT_LEARNING * BASE
    assert FlatPredictions().check(end) is None
    f = SlowStart().check(end)
    assert f is not None and f.cause is None and str(f.severity) == "info"
    e = f.evidence
    assert e["window_loss"] < (1 - thresholds.FLAT_SPREAD ** 2) * e["baseline_loss"]
    assert e["spread_now"] > 1.25 * e["spread_before"]
    assert "warmup" in f.fix
    d = diagnose(end)
    assert d.verdict == "healthy" and d.flatline is None, [x.code for x in d.findings]


def test_most_noise_draws_of_a_slow_start_are_not_flatlines():
    flat_by_level, still_flagged = 0, 0
    for seed in range(40):
        end = _run(slow_start, widening, seed=seed, noise=0.25)  # batches of 32
        if FlatPredictions().flat_since(end) is not None:
            flat_by_level += 1
            still_flagged += FlatPredictions().check(end) is not None
    # the rest: draws whose loss, by chance, sits at the baseline over the whole window
    assert flat_by_level >= 10 and still_flagged <= flat_by_level / 3, (flat_by_level, still_flagged)


def test_run_stuck_at_the_baseline_is_caught_at_the_same_step():
    for noise in (0.25, NOISE):
        for seed in range(20):
            run = _run(stuck, flat, seed=seed, noise=noise)
            assert _first_firing(FlatPredictions(), run) == _first_step_before(run), (noise, seed)
            assert _first_firing(SlowStart(), run) is None, (noise, seed)
    run = _run(stuck, flat)
    assert _first_firing(FlatPredictions(), run) == thresholds.GRACE_STEPS
    assert diagnose(_at(run, thresholds.GRACE_STEPS)).verdict == "flatlined"


def test_loss_falling_to_the_baseline_is_not_learning():
    """A collapse whose loss fell from a high start down *to* the baseline, the spread narrowing: still a flatline."""
    fired = 0
    for seed in range(20):
        run = _run(fell_to_the_baseline, shrinking, seed=seed)
        first = _first_firing(FlatPredictions(), run)
        assert first == _first_step_before(run), seed
        assert _first_firing(SlowStart(), run) is None, seed
        fired += first is not None
    assert fired >= 18


def test_loss_under_the_baseline_with_a_flat_spread_is_not_enough():
    for seed in range(20):
        run = _run(slow_start, flat, seed=seed)
        assert _first_firing(FlatPredictions(), run) == _first_step_before(run), seed
        assert _first_firing(SlowStart(), run) is None, seed
