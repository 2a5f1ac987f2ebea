"""L002: the loss function does not fit the task."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.measures import bce_regression
from defib.signals.run import Signals


@register
class WrongLoss(Rule):
    """The loss does not match the targets or the head.

    What it detects:
        Cross-entropy over a single logit (the loss is always 0); an
        element-wise regression loss fed class logits and class ids; BCE fed
        continuous scores outside [0, 1]; cross-entropy fed soft targets that
        are not distributions (continuous scores squeezed into a class axis);
        a hand-written loss that averages ``pred - target`` over the batch
        before its absolute value or square (``abs((pred - y).mean())``),
        which only the batch mean can satisfy.

    Why it flattens predictions:
        Each of these gives the model nothing to learn from the input: a
        softmax over one logit is always 1 (zero loss, zero gradient), MSE
        between K logits and a class id pulls every logit towards the id's
        value, BCE cannot be satisfied by targets above 1 so it saturates all
        outputs alike. transformers picks the loss from ``num_labels`` and the
        label dtype (``problem_type``), so float labels with ``num_labels>1``
        silently become multi-label BCE.

    Example:
        ``AutoModelForSequenceClassification.from_pretrained(p, num_labels=1)``
        with ``nn.CrossEntropyLoss()`` on class ids.

    Fix:
        Regression: one output, MSE/Huber, float targets. Single-label
        classification: K logits, cross-entropy, integer class ids.
        Multi-label: K logits, BCE-with-logits, 0/1 float targets. With
        transformers, set ``problem_type`` explicitly.
    """

    code = "L002"
    cause = "loss.wrong_loss"
    title = "The loss does not fit the task"
    severity = Severity.ERROR
    needs = ("loss",)  # and preds, except for a loss whose shape alone is wrong

    def check(self, s: Signals) -> Finding | None:
        ls, p = s.loss, s.preds
        if ls is not None and ls.reduced_first:
            op = "absolute value" if ls.fn == "l1_loss" else "square"
            return self.finding(
                f"The loss averages pred - target over the batch before taking its {op}: it is zero whenever the "
                "batch's mean prediction is right, whatever each example's prediction is, so nothing asks the "
                "model to tell examples apart.",
                confidence=0.9, where=ls.where,
                fix=("loss = (pred - target).abs().mean()" if ls.fn == "l1_loss"
                     else "loss = ((pred - target) ** 2).mean()") + "  # per example first, then the mean",
                evidence={"loss": ls.fn, "reduced_first": True, "graph": list(ls.producer)[:6]})
        if p is None:
            return None
        width = ls.input_shape[-1] if ls.input_shape else None
        if ls.fn == "nll_loss" and ls.logprob_rows_share is not None and ls.logprob_rows_share < 0.5:
            low = ls.values.pairs()
            neg = min((v for _, v in low), default=0.0)
            return self._found(ls, f"nll_loss expects log-probabilities but {1 - ls.logprob_rows_share:.0%} of its input "
                                   f"rows are raw scores (their exp does not sum to 1)"
                                   + (f"; the loss went negative ({neg:.3g}), which no log-probability allows" if neg < 0
                                      else "") + ": it rewards inflating one logit, not ranking the right class.",
                               "loss = F.cross_entropy(logits, labels)  # or F.nll_loss(F.log_softmax(logits, -1), labels)",
                               chosen=True)
        if ls.family == "classification" and p.n_classes == 1:
            return self._found(ls, f"{ls.fn} is applied to a single logit per row: softmax over one value is "
                                   "always 1, so the loss is 0 and nothing learns.",
                               "Use MSE for one regression output, or num_labels=K logits for K classes.")
        if ls.family == "regression" and width and width > 1 and len(ls.input_shape) == 2 \
                and p.target_integer and len(ls.target_shape) == 1:
            return self._found(ls, f"{ls.fn} compares {width} logits per row with integer class ids: a regression "
                                   "loss on a classification head.",
                               "loss = F.cross_entropy(logits, labels.long())", chosen=True)
        if ls.family == "multilabel" and p.target_max is not None and p.target_max > 1 and not p.target_integer \
                and not bce_regression(s):  # one output per row: the sigmoid's range (M003)
            return self._found(ls, f"{ls.fn} is fed continuous targets up to {p.target_max:.3g}: BCE needs 0/1 "
                                   "targets; continuous scores want MSE.",
                               "loss = F.mse_loss(pred.squeeze(-1), scores)", chosen=True)
        if ls.family == "classification" and ls.target_dtype.startswith("float") \
                and len(ls.target_shape) == len(ls.input_shape) and (ls.soft_target_max or 0) > 1:
            return self._found(ls, f"{ls.fn} is fed float targets up to {ls.soft_target_max:.3g} as class "
                                   "probabilities: these are not distributions.",
                               "Use integer class ids (or rows that sum to 1) with cross-entropy.")
        return None

    def _found(self, ls, message: str, fix: str, chosen: bool = False) -> Finding:
        """``chosen``: the mistake is the choice of loss, so ``where`` is the line that built the loss module
        (``criterion = nn.BCEWithLogitsLoss()``) when there is one, not the line that calls it."""
        where = (ls.module_where or ls.where) if chosen else ls.where
        return self.finding(message, confidence=0.9, where=where, fix=fix,
                            evidence={"loss": ls.fn, "input_shape": list(ls.input_shape),
                                      "target_shape": list(ls.target_shape), "target_dtype": ls.target_dtype})
