"""L004: an unweighted loss on imbalanced classes, and the model predicts the majority."""

from __future__ import annotations

from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num
from defib.signals.run import TOKEN_TASK, Signals


@register
class ClassImbalance(Rule):
    """Imbalanced labels, an unweighted loss, and predictions stuck on the majority class.

    What it detects:
        The label prior seen at the loss (the majority class's share against
        a uniform 1/K, and at least two thirds of the labels), whether the loss has class weights, the share of
        recent predictions that are the majority class, and whether the loss
        still sits at the entropy of the label prior (a model that leans to
        the majority but beats the prior is learning, not collapsed).
        Token classification (NER) counts tokens, the positions at the
        loss's ignore index (-100) left out: the classic collapse is every
        token predicted O. Multi-label BCE without ``pos_weight``: labels
        that are 1 in at most a quarter of the rows, and predictions above
        0.5 that recall at most a tenth of their positives (every sigmoid
        below 0.5 is the extreme), the loss no better than predicting each
        label's rate.

    Why it flattens predictions:
        With an unweighted loss, always answering the majority class already
        scores the prior's entropy; early in training that is the easiest
        minimum to fall into, and a model that lands there stops looking at
        the input. This only counts as a cause when the predictions actually
        collapse onto the majority class: imbalance alone is not a bug.

    Example:
        90% "fresh", 10% "rotten", ``nn.CrossEntropyLoss()`` without
        ``weight=``: after 100 steps every review is "fresh".

    Fix:
        ``nn.CrossEntropyLoss(weight=torch.tensor(n / (k * counts)))``
        (inverse frequency), focal loss, or a balanced sampler; for
        multi-label, ``nn.BCEWithLogitsLoss(pos_weight=(n - pos) / pos)``.
    """

    code = "L004"
    cause = "loss.class_imbalance"
    title = "Imbalanced classes with an unweighted loss"
    severity = Severity.ERROR
    needs = ("loss", "preds")

    min_step = thresholds.GRACE_STEPS      # grace period, as for the flatline
    min_imbalance = 1.5                    # majority share at least this many times the uniform share 1/K
    # and at least this share of all labels: the classes the model gives up on must be a minority together. With
    # a third of the labels or more outside the majority (54/39/7 on Rotten Tomatoes' three classes), learning
    # them pays too much for an unweighted loss to ignore; a model that still answers only the majority has
    # another cause (labels that do not belong to their texts, a frozen or reset encoder), which this rule would
    # mask. The seed article's and the benchmark's imbalance collapses are 80/20 to 93/5/2.
    min_majority = 2 / 3
    collapsed_share = 0.9                  # share of recent predictions that are the majority class
    loss_margin = thresholds.NOT_LEARNING  # and the loss no better than this share of the prior's entropy: nothing learned

    def check(self, s: Signals) -> Finding | None:
        ls, p = s.loss, s.preds
        if s.step < self.min_step:
            return None
        if ls.family == "multilabel":
            return self._rare_positives(s)
        if ls.weighted:
            return None
        if ls.family != "classification" or not p.label_counts:
            return None
        k = max(p.n_classes or 0, len(p.label_counts))
        total = sum(p.label_counts.values())
        major, count = max(p.label_counts.items(), key=lambda kv: kv[1])
        share = count / total
        if k < 2 or len(p.label_counts) < 2 or share < max(self.min_imbalance / k, self.min_majority):
            return None  # one class seen at all is constant labels (D006), not an imbalance a weight can fix
        preds = sum(p.pred_counts.values())
        pred_share = p.pred_counts.get(major, 0) / preds if preds else 0.0
        if pred_share < self.collapsed_share:
            return None
        loss, base = p.loss_window.last, p.baseline.last
        if loss is not None and base is not None and loss < self.loss_margin * base:
            return None  # biased towards the majority, but learning: the loss beats the prior
        if s.task == TOKEN_TASK:
            return self.finding(
                f"Tag {major} is {share:.0%} of the real tokens' tags (uniform would be {1 / k:.0%}; {p.ignored} "
                f"positions at the ignore index left out) and {pred_share:.0%} of the recent predicted tags, with an "
                f"unweighted loss stuck at {num(loss)} (the tag prior's entropy is {num(base)}).",
                confidence=0.6, where=ls.where,
                evidence={"label_counts": p.label_counts, "majority_share": round(share, 4),
                          "majority_prediction_share": round(pred_share, 4), "weighted": ls.weighted,
                          "unit": "token", "ignored_targets": p.ignored},
                fix="weights = counts.sum() / (len(counts) * counts)  # counts per tag, -100 left out; "
                    "nn.CrossEntropyLoss(weight=weights), or sample sentences with rare tags more often")
        return self.finding(
            f"Class {major} is {share:.0%} of the labels (uniform would be {1 / k:.0%}) and {pred_share:.0%} of recent "
            f"predictions, with an unweighted loss stuck at {num(loss)} (the label prior's entropy is {num(base)}).",
            confidence=0.6, where=ls.where,
            evidence={"label_counts": p.label_counts, "majority_share": round(share, 4),
                      "majority_prediction_share": round(pred_share, 4), "weighted": ls.weighted},
            fix="weights = counts.sum() / (len(counts) * counts); nn.CrossEntropyLoss(weight=weights)")

    def _rare_positives(self, s: Signals) -> Finding | None:
        """Multilabel BCE without ``pos_weight`` (or with one that does not lift the rare labels: pos / neg where
        neg / pos was meant): labels that are rarely 1 and predictions that recall almost none."""
        ls, p = s.loss, s.preds
        rates, preds = p.label_pos_rate, p.pred_pos_rate
        if not rates or len(preds) != len(rates):
            return None
        weights = ls.pos_weight or []
        if ls.weighted and len(weights) not in (1, len(rates)):
            return None  # weighted some other way (weight=, a pos_weight that broadcasts otherwise): not judged
        # a label 1 at most this often is imbalanced as a binary class (negatives >= min_imbalance / 2); never 1 is
        # a constant label (D006), which no weight fixes
        rare = [i for i, q in enumerate(rates) if 0 < q <= 1 - self.min_imbalance / 2]
        if ls.weighted:
            lifted = [i for i in rare if (weights[0] if len(weights) == 1 else weights[i]) > 1.0]
            if lifted or not weights:
                return None  # the rare labels' positives weigh more than their negatives: the weight is the fix
        positives = sum(rates[i] for i in rare)
        if not rare or sum(preds[i] for i in rare) > (1 - self.collapsed_share) * positives:
            return None
        loss, base = p.loss_window.last, p.baseline.last
        if loss is not None and base is not None and loss < self.loss_margin * base:
            return None
        shown = ", ".join(f"{rates[i]:.0%}" for i in rare[:8]) + (", ..." if len(rare) > 8 else "")
        how = ("BCE without pos_weight" if not ls.weighted else
               "BCE whose pos_weight is at most 1 on every one of them (positives weigh less than negatives: "
               "pos / neg where neg / pos was meant?)")
        return self.finding(
            f"{len(rare)} of {len(rates)} labels are rarely 1 (positive rates {shown}) and the predictions above 0.5 "
            f"recall {sum(preds[i] for i in rare) / positives:.0%} of their positives, with {how} "
            f"stuck at {num(loss)} (always predicting each label's rate scores {num(base)}).",
            confidence=0.6, where=ls.weight_where or ls.where if ls.weighted else ls.where,
            evidence={"label_pos_rate": [round(q, 4) for q in rates], "pred_pos_rate": [round(q, 4) for q in preds],
                      "rare_labels": rare, "weighted": ls.weighted, "pos_weight": weights[:len(rates)] or None},
            fix="pos_weight = (n_rows - positives) / positives  # per label; "
                "nn.BCEWithLogitsLoss(pos_weight=pos_weight)")
