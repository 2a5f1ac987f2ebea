"""S001: predictions have collapsed to (nearly) one value or one class."""

from __future__ import annotations

import math

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num as _f, rnd as _r
from defib.rules.measures import recent_trend
from defib.signals.run import TOKEN_TASK, Signals


@register
class FlatPredictions(Rule):
    """Predictions no longer vary with the input.

    What it detects:
        After the first ``min_step`` optimizer steps, the spread of the most
        recent predictions stays below ``max_spread`` of the targets' spread
        (regression: the std of the predictions within a batch, averaged over
        recent batches, over the std of all targets; classification:
        entropy of the predicted classes / entropy of the labels), while the
        training loss is no better than the best constant predictor's
        (variance of the targets for MSE, entropy of the label prior for
        cross-entropy) and has stopped falling (less than ``min_progress``
        over the last ``plateau_steps`` steps). Not while the run is still
        learning: over the last 40 steps, the mean loss under the baseline
        by 0.15^2 of it and not climbing back between the halves, and the
        spread widening by a quarter (that is S002, a slow start).

        A loss that takes no labels (sentence-transformers' in-batch
        negatives, MultipleNegativesRankingLoss) has no target spread to
        compare with: there, flat means the sentence embeddings of different
        texts have a mean cosine above ``max_cosine`` on ``sustain``
        consecutive sampled steps while the loss stays at the same level of
        its baseline, log(candidates per anchor), and has stopped falling.

    Why it flattens predictions:
        This is the flatline itself, measured. A regressor whose predictions
        correlate with the targets at r has a prediction std of about r times
        the target std when calibrated; below 0.15 it explains at most 2% of
        the variance. Within-batch spread is used because a bias chasing the
        batch means (what a broadcasting loss produces) makes predictions
        drift between batches without depending on the input. The loss checks
        separate a collapse from a model that is merely cautious or still
        walking its output towards the targets' mean (MSE on raw 0-5 scores
        starts far above the baseline). A fresh head starts flat, hence the
        grace period.

        For sentence embeddings (sentence-transformers) the evidence adds the
        mean cosine between the embeddings of different texts in a batch: near
        1, every text points the same way (the embeddings collapsed), which
        says what flattened, not why. With in-batch negatives that is the
        flatline itself: every candidate scores alike, so the loss is that of
        picking the positive at random.

    Example:
        step 120: prediction std 0.004 against target std 1.52; loss 2.31,
        constant-predictor loss 2.30.

    Fix:
        This is a symptom: see the root cause ranked above it. If none is
        named, run ``defib probe`` on the model to ask it directly.
    """

    code = "S001"
    cause = None
    title = "Predictions flatlined"
    severity = Severity.ERROR
    needs = ("preds", "preds.spread", "preds.loss_window", "preds.baseline")

    min_step = thresholds.GRACE_STEPS      # steps of grace: a freshly initialised head starts flat
    max_spread = thresholds.FLAT_SPREAD    # prediction spread / target spread below this is flat (< 2% of the variance)
    loss_margin = thresholds.NOT_LEARNING  # the loss must be at least this share of the constant-predictor loss
    sustain = 3                            # consecutive flat measurements needed
    plateau_steps = 20                     # look this many steps back to see whether the loss still falls
    min_progress = 0.1                     # a loss still falling by this share over plateau_steps is converging, not flat
    # No labels (in-batch negatives): unit embeddings whose mean pairwise cosine is c keep a variance of about
    # 1 - c around their common direction; above 0.95, under 5% of what unrelated directions (c = 0) have.
    max_cosine = 0.95

    def check(self, s: Signals) -> Finding | None:
        since = self.flat_since(s)
        if since is None:
            return None
        trend = recent_trend(s)
        if trend is not None and trend.learning:
            return None  # narrow but widening, loss falling below the baseline: a slow start (S002)
        p = s.preds
        points = p.spread.pairs()
        loss, base = p.loss_window.last, p.baseline.last
        cosine = s.model.embedding_cosine.last if s.model is not None else None
        if p.task == "classification":
            top, n = (max(p.pred_counts.items(), key=lambda kv: kv[1]) if p.pred_counts else (None, 0))
            total = sum(p.pred_counts.values()) or 1
            if s.task == TOKEN_TASK:  # the ignored positions (-100) are already left out of both counts
                msg = (f"Since step {max(since, 1)} the model predicts tag {top} for {n / total:.0%} of recent tokens "
                       f"(tags of the real tokens: {_shares(p.label_counts)}); loss {_f(loss)} vs {_f(base)} for "
                       f"always guessing the tag prior.")
            else:
                msg = (f"Since step {max(since, 1)} the model predicts class {top} for {n / total:.0%} of recent "
                       f"inputs (labels: {_shares(p.label_counts)}); loss {_f(loss)} vs {_f(base)} for always "
                       f"guessing the prior.")
            pred_std = _class_std(p.pred_counts)
            target_std = _class_std(p.label_counts)
        elif p.task == "multilabel" and p.pred_pos_rate:
            # std within a batch of each label's predicted probability, against each label's 0/1 target std
            above = ("every predicted probability is below 0.5: no label is predicted for any input"
                     if max(p.pred_pos_rate) == 0 else
                     f"{_f(100 * _mean(p.pred_pos_rate))}% of recent predictions are above 0.5")
            msg = (f"Since step {max(since, 1)} each label's predicted probability varies by {_f(p.batch_std)} across "
                   f"inputs and {above} ({_f(100 * _mean(p.label_pos_rate))}% of the targets are 1); loss {_f(loss)} "
                   f"vs {_f(base)} for always predicting each label's rate.")
            pred_std, target_std = p.batch_std, _mean([math.sqrt(q * (1 - q)) for q in p.label_pos_rate])
        elif p.target_std is None:  # no labels: the embeddings themselves flattened
            msg = (f"Since step {max(since, 1)} the embeddings of different texts have mean cosine {_f(cosine)}, so "
                   f"every candidate scores alike: loss {_f(loss)} vs {_f(base)} for picking the positive among the "
                   f"batch's candidates at random.")
            pred_std, target_std = p.batch_std, None
        else:
            msg = (f"Since step {max(since, 1)} predictions vary by {_f(p.batch_std)} (std within a batch) while "
                   f"targets vary by {_f(p.target_std)}; loss {_f(loss)} vs {_f(base)} for always predicting the mean.")
            pred_std, target_std = p.batch_std, p.target_std
        evidence = {"since_step": since, "pred_std": _r(pred_std), "target_std": _r(target_std),
                    "spread_ratio": _r(points[-1][1]) if points else None, "loss": _r(loss), "baseline_loss": _r(base)}
        if cosine is not None:  # sentence embeddings: how alike the texts' vectors have become
            evidence["embedding_cosine"] = _r(cosine)
            if target_std is not None:
                msg += f" Embeddings of different texts have mean cosine {_f(cosine)}."
        return self.finding(
            msg, confidence=0.95,
            evidence=evidence,
            fix="Fix the root cause listed first; the flatline follows from it.")

    def flat_since(self, s: Signals) -> int | None:
        """The step since which predictions are flat and the loss stuck at the baseline's level, else None."""
        p = s.preds
        points = self._flat_points(s)
        if s.step < self.min_step or len(points) < self.sustain or not all(f for _, f in points[-self.sustain:]):
            return None
        loss, base = p.loss_window.last, p.baseline.last
        if loss is not None and base is not None and math.isfinite(loss) and loss < self.loss_margin * base:
            return None
        if self._still_falling(p.loss_window.pairs(), s.step):
            return None
        since = points[-1][0]
        for st, flat in reversed(points):
            if not flat:
                break
            since = st
        return since

    def _flat_points(self, s: Signals) -> list[tuple[int, bool]]:
        """(step, flat) for each measurement of the predictions' spread, oldest first."""
        p = s.preds
        if p.task == "regression" and p.target_std is None and s.model is not None:
            # no labels to spread against (in-batch negatives): flat is every text's embedding alike
            return [(st, v > self.max_cosine) for st, v in _by_step(s.model.embedding_cosine.pairs())]
        return [(st, not (math.isfinite(v) and v >= self.max_spread)) for st, v in p.spread.pairs()]

    def _still_falling(self, losses: list[tuple[int, float]], step: int) -> bool:
        """True while the loss keeps dropping: a slow start, not a collapse."""
        past = [v for st, v in losses if st <= step - self.plateau_steps and math.isfinite(v)]
        now = losses[-1][1] if losses else None
        if not past or now is None or not math.isfinite(now):
            return False
        return (past[-1] - now) > self.min_progress * abs(past[-1])


def _by_step(pairs: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """One point a step: the lowest of that step's values (a bi-encoder embeds each column in its own call)."""
    out: dict[int, float] = {}
    for st, v in pairs:
        out[st] = min(v, out.get(st, v))
    return sorted(out.items())


def _shares(counts: dict[int, int]) -> str:
    total = sum(counts.values()) or 1
    return ", ".join(f"{k}: {v / total:.0%}" for k, v in sorted(counts.items()))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _class_std(counts: dict[int, int]) -> float | None:
    total = sum(counts.values())
    if not total:
        return None
    mean = sum(k * v for k, v in counts.items()) / total
    return math.sqrt(sum(v * (k - mean) ** 2 for k, v in counts.items()) / total)
