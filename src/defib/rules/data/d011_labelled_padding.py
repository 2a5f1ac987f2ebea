"""D011: a token-level loss supervises padding positions (labels padded with a tag instead of the ignore index)."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.measures import collapsed, not_learning
from defib.signals.run import Signals


@register
class LabelledPadding(Rule):
    """Token labels at padding positions count in the loss: the batch's padding is supervised as a tag.

    What it detects:
        On sampled steps, a token-level classification loss's targets are set
        against the training batch's attention mask: a label other than the
        loss's ignore index (-100) at a position the mask marks as padding is
        supervised padding. Reported when at least 1 in 20 supervised
        positions is padding (and 32 or more were seen): a collate or a
        tokenizer call that pads the labels with a tag id (O, 0) instead of
        -100. An error when the run shows the harm (flat predictions, or a
        loss no better than the constant predictor's), a warning before.

    Why it flattens predictions:
        Padding is a large share of the positions of a padded batch (half of
        them in batches of tweets padded to the longest). Every one becomes a
        supervised O: a tag set that was 95% O becomes 97-98% O, and the
        cheapest answer left is O for every token, entities included.

    Example:
        ``labels = pad_sequence(tags, batch_first=True, padding_value=0)``
        where 0 is the O tag.

    Fix:
        Pad the labels with -100 (``padding_value=-100``;
        ``DataCollatorForTokenClassification`` does it), so padding is
        ignored by the loss.
    """

    code = "D011"
    cause = "data.label_encoding"
    title = "Padding positions carry token labels"
    severity = Severity.ERROR
    needs = ("data", "loss")

    min_share = 0.05  # of the supervised positions: more than stray rows, the way the labels are padded
    min_padding = 32

    def check(self, s: Signals) -> Finding | None:
        d, ls = s.data, s.loss
        if d.labelled_tokens == 0 or d.labelled_padding < self.min_padding:
            return None
        share = d.labelled_padding / d.labelled_tokens
        if share < self.min_share:
            return None
        harm = collapsed(s) or not_learning(s)
        return self.finding(
            f"{d.labelled_padding} of the {d.labelled_tokens} token labels the loss supervised on sampled steps "
            f"({share:.0%}) sit at padding positions (attention mask 0): the labels were padded with a tag, not "
            f"with the loss's ignore index {ls.ignore_index}, so the model is also taught that tag for padding.",
            confidence=0.9, severity=Severity.ERROR if harm else Severity.WARNING,
            where=d.collate_where or ls.label_where or ls.where,  # a collate of the script's pads the labels
            evidence={"labelled_padding": d.labelled_padding, "labelled_tokens": d.labelled_tokens,
                      "padding_share": round(share, 4), "ignore_index": ls.ignore_index},
            fix=f"Pad the labels with {ls.ignore_index} (padding_value={ls.ignore_index}; "
                "DataCollatorForTokenClassification does it) so padding is left out of the loss.")
