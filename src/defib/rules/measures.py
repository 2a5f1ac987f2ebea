"""Definitions that rules of more than one area read, so that no area imports another's modules.

What a single area uses stays in that area (the optimizer rules' update
ratios and learning rates: :mod:`defib.rules.optim.common`); the numbers
rules share are in :mod:`defib.rules.thresholds`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from defib.rules import thresholds
from defib.signals.run import Signals

# optimizers that scale each step by a running gradient magnitude, so a loss scale hardly changes their steps
# (L005 leaves them alone, O008 does not blame an undivided accumulated loss on them)
ADAPTIVE = ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adagrad", "Adadelta", "RMSprop", "Adafactor", "LAMB", "Lion")
# ... of which these move every weight by about lr per step while gradients keep their sign
LR_SIZED_STEPS = ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "RMSprop", "Lion")


@dataclass(frozen=True)
class Trend:
    """The loss and the prediction spread over the recent window, earlier half against later half.

    A run that looks flat (narrow predictions, loss near the constant
    predictor's) is either stuck there or on its way out: a fresh head on a
    low learning rate, a decaying schedule without warmup. The level alone
    cannot tell them apart; the direction can. A collapse often shows a
    falling loss too, from a high initial value down *to* the baseline, so
    falling is not enough: the loss must be below the baseline, and not
    climbing back, and the predictions must be widening. The per-step loss is
    noisy (batches of 8 vary by half the baseline), the spread, a mean over 16
    batches, much less: it carries most of the weight.
    """

    steps: int              # optimizer steps the window spans
    loss_before: float      # mean per-step loss, earlier half
    loss_now: float         # mean per-step loss, later half
    loss_mean: float        # mean per-step loss over the whole window
    change_se: float        # standard error of loss_now - loss_before (per-step losses: independent batches)
    baseline: float         # constant-predictor loss
    spread_before: float    # mean prediction spread / target spread, earlier half
    spread_now: float       # ... later half

    @property
    def below_baseline(self) -> bool:
        """The window's mean loss under the baseline by the gain of a calibrated predictor at the flat line (r^2).

        An effect size, not a significance test: with batches of 8 a per-step MSE varies by about half the
        baseline, so 40 steps pin the mean only to ~0.08 of it, and S001 already requires the loss within 10%
        of the baseline; a test at one standard error would leave a band of 0.02 between the two. The
        spread's test, on a series averaged over 16 batches, is what a stuck run fails.
        """
        return self.baseline - self.loss_mean > thresholds.FLAT_SPREAD ** 2 * self.baseline

    @property
    def rising(self) -> bool:
        """The later half's loss above the earlier half's by more than batch noise: climbing back, not learning.

        Not the converse test (falling by more than noise): a slow fall is lost in batch noise over 40 steps,
        so the level and the spread carry the evidence that the run learns.
        """
        return self.loss_now - self.loss_before > thresholds.TREND_Z * self.change_se

    @property
    def widening(self) -> bool:
        return self.spread_now > (1 + thresholds.SPREAD_GROWTH) * self.spread_before

    @property
    def learning(self) -> bool:
        """Loss below the baseline and not climbing back, spread growing: a slow start, not a flatline."""
        return self.below_baseline and not self.rising and self.widening


MIN_HALF = 5  # points in each half of the window below which a mean and its standard error mean little


def recent_trend(s: Signals) -> Trend | None:
    """The trend over the last ``TREND_STEPS`` steps (or the last ``2 * MIN_HALF`` points), None without enough data."""
    if s.loss is None or s.preds is None:
        return None
    base = s.preds.baseline.last
    if base is None or not math.isfinite(base) or base <= 0:
        return None
    losses = _window(s.loss.values.pairs(), s.step)
    spreads = [v for _, v in _window(s.preds.spread.pairs(), s.step)]
    if len(losses) < 2 * MIN_HALF or len(spreads) < 2:
        return None
    values = [v for _, v in losses]
    early, late = values[:len(values) // 2], values[len(values) // 2:]
    half = len(spreads) // 2
    return Trend(steps=losses[-1][0] - losses[0][0] + 1, loss_before=statistics.fmean(early),
                 loss_now=statistics.fmean(late), loss_mean=statistics.fmean(values),
                 change_se=math.hypot(_se(early), _se(late)),
                 baseline=base, spread_before=statistics.fmean(spreads[:half]),
                 spread_now=statistics.fmean(spreads[half:]))


def _window(pairs: list[tuple[int, float]], step: int) -> list[tuple[int, float]]:
    """Finite points of the last TREND_STEPS steps; at least the last 2 * MIN_HALF points of a thinned series."""
    finite = [(st, v) for st, v in pairs if math.isfinite(v)]
    recent = [(st, v) for st, v in finite if st > step - thresholds.TREND_STEPS]
    return recent if len(recent) >= 2 * MIN_HALF else finite[-2 * MIN_HALF:]


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values))


def not_learning(s: Signals) -> bool:
    """After the grace period the loss is still no better than the constant predictor's (S001's loss criterion)."""
    p = s.preds
    if p is None or s.step < thresholds.GRACE_STEPS:
        return False
    loss, base = p.loss_window.last, p.baseline.last
    return loss is not None and base is not None and math.isfinite(loss) and loss >= thresholds.NOT_LEARNING * base


def collapsed(s: Signals) -> bool:
    """Predictions already flat (the S001 spread criterion without its grace period)."""
    p = s.preds
    if p is None or not len(p.spread):
        return False
    last = p.spread.last
    return last is not None and (not math.isfinite(last) or last < thresholds.FLAT_SPREAD)


def bce_regression(s: Signals) -> bool:
    """BCE scoring one output per row against continuous targets: a regression through the loss's own sigmoid.

    Three rules read BCE's targets, and this splits them: integer targets are class ids handed to BCE
    (``data.label_encoding``, D007); continuous targets over several outputs per row are scores fed to a
    multi-label loss (``loss.wrong_loss``, L002); one output per row with continuous targets is a regression
    whose bounded output is BCE's sigmoid (``model.output_range``, M003), as sentence-transformers'
    ``CrossEncoder(num_labels=1)`` trains on similarity scores.
    """
    ls, p = s.loss, s.preds
    if ls is None or p is None or ls.family != "multilabel" or not ls.fn.startswith("binary_cross_entropy"):
        return False
    shape = tuple(ls.input_shape or ())
    one_output = len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)
    return one_output and p.target_integer is False
