"""D107: classes so imbalanced that an unweighted loss invites predicting the majority."""

from __future__ import annotations

from defib.signals.check import CheckSignals
from defib.signals.run import TOKEN_TASK
from defib.rules.base import Finding, Rule, Severity, register


@register
class ClassImbalanceInData(Rule):
    """One class outnumbers another by a large factor: a risk for an unweighted loss.

    What it detects:
        The ratio of the largest class to the smallest (for multilabel: of
        the rows without a label to the rows with it, for the rarest label;
        for token classification: of the tokens carrying the commonest tag,
        usually O, to those carrying the rarest). It gives the
        inverse-frequency class weights it recommends.

    Why it flattens predictions:
        With an unweighted loss, always answering the majority class already
        scores the entropy of the label prior; early in training that is the
        easiest minimum to fall into, and a model that lands there stops
        looking at the input. Imbalance alone is not a bug, so this is a
        warning: the run-time rule L004 says whether the predictions did
        collapse onto the majority.

    Example:
        Rotten Tomatoes with its "plot" class: 7,403 fresh, 5,405 rotten,
        1,097 plot; ``nn.CrossEntropyLoss()`` without ``weight=``.

    Fix:
        ``nn.CrossEntropyLoss(weight=torch.tensor(WEIGHTS))`` with the weights
        given here (``n / (K * count)``), a focal loss (gamma=2), or a
        balanced sampler; for multilabel, ``BCEWithLogitsLoss(pos_weight=...)``.
    """

    code = "D107"
    cause = "loss.class_imbalance"
    title = "Imbalanced classes (an unweighted loss will lean to the majority)"
    severity = Severity.WARNING
    needs = ("labels", "labels.counts")
    stage = "check"

    max_ratio = 5.0     # largest class / smallest class above this: the minority is easy to give up on
    min_rows = 20       # rows (tokens, for token classification) before judging

    def check(self, s: CheckSignals) -> Finding | None:
        lab = s.labels
        counts = lab.counts
        seen = lab.tags if s.task == TOKEN_TASK else lab.rows
        if seen < self.min_rows or len(counts) < 2 or s.task not in ("classification", "multilabel", TOKEN_TASK):
            return None
        if s.task == "multilabel":
            return self._multilabel(s)
        n, k = sum(counts.values()), len(counts)
        (major, big), (minor, small) = max(counts.items(), key=lambda kv: kv[1]), min(counts.items(), key=lambda kv: kv[1])
        ratio = big / small
        if ratio < self.max_ratio:
            return None
        weights = {str(c): round(n / (k * m), 3) for c, m in counts.items()}
        ordered = [weights[str(c)] for c in sorted(counts)]  # the order of a sorted label2id
        if s.task == TOKEN_TASK:
            return self.finding(
                f"Tag {major!s} is on {big / n:.0%} of {n:,} tokens and tag {minor!s} on {small:,} ({ratio:.0f}x "
                f"fewer): an unweighted loss can score well by tagging every token {major!s}.",
                confidence=0.6,
                evidence={"tag_counts": {str(c): m for c, m in counts.items()}, "tokens": n,
                          "majority_tag": str(major), "majority_share": round(big / n, 4), "ratio": round(ratio, 2),
                          "class_weights": weights},
                fix=f"nn.CrossEntropyLoss(weight=torch.tensor({ordered}), ignore_index=-100)  # tags in sorted order")
        return self.finding(
            f"Class {major!s} has {big:,} rows and class {minor!s} {small:,} ({ratio:.1f}x fewer; "
            f"{small / n:.1%} of {n:,} rows): an unweighted loss can score well by predicting {major!s}.",
            confidence=0.6,
            evidence={"label_counts": {str(c): m for c, m in counts.items()}, "ratio": round(ratio, 2),
                      "class_weights": weights},
            fix=f"nn.CrossEntropyLoss(weight=torch.tensor({ordered}))  # classes in sorted order; or focal loss, gamma=2")

    def _multilabel(self, s: CheckSignals) -> Finding | None:
        lab = s.labels
        rare, on = min(lab.counts.items(), key=lambda kv: kv[1])
        if on == 0:
            return None  # a label never on is D104's (constant) business
        ratio = (lab.rows - on) / on
        if ratio < self.max_ratio:
            return None
        pos_weight = {str(c): round((lab.rows - m) / m, 2) for c, m in lab.counts.items() if m}
        return self.finding(
            f"Label {rare!s} is on in {on:,} of {lab.rows:,} rows ({ratio:.0f}x more rows without it): "
            "an unweighted BCE can score well by never predicting it.",
            confidence=0.5, evidence={"label_counts": {str(c): m for c, m in lab.counts.items()},
                                      "pos_weight": pos_weight},
            fix="nn.BCEWithLogitsLoss(pos_weight=torch.tensor(POS_WEIGHT))  # (rows - on) / on per label")
