"""D202 (probe): the model's outputs do not depend on the attention mask."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import num, rnd
from defib.signals.run import Signals


@register
class MaskIgnored(Rule):
    """Padded inputs, and a model that never reads the attention mask.

    What it detects:
        ``defib probe`` gives each row of a padded batch its neighbour's
        attention mask (the mask rolled by one across the batch). A model that
        uses the mask must answer differently for rows whose mask changed;
        reported when the outputs move by less than ``max_effect`` of their
        spread across inputs, or when the model's ``forward`` takes no
        ``attention_mask`` at all while the rows are padded.

    Why it flattens predictions:
        Unmasked padding is attended to like text: short inputs drown in
        [PAD] vectors, which are the same for every row, so the
        representations and the outputs of different texts converge.

    Example:
        ``def forward(self, input_ids, attention_mask): h = self.bert(input_ids)``
        (the mask is taken and dropped).

    Fix:
        ``self.bert(input_ids=input_ids, attention_mask=attention_mask)``,
        and pass ``attention_mask`` from the tokenizer's output to the model.
    """

    code = "D202"
    cause = "data.attention_mask"
    title = "Padding not masked: the model ignores the attention mask"
    severity = Severity.ERROR
    stage = "probe"
    needs = ("probe", "probe.sensitivity")

    max_effect = 1e-4   # output change / output spread below this: the mask changed nothing
    min_rows = 2        # rows whose mask must change for the test to count
    min_output_spread = 0.01  # outputs that ignore every input (S101) also ignore the mask: not this cause

    def check(self, s: Signals) -> Finding | None:
        v = s.probe.sensitivity
        if v.padded_rows == 0:
            return None
        if v.mask_accepted is False:
            return self.finding(
                f"{v.padded_rows} of {v.rows} probed rows are padded, and the model's forward takes no attention_mask: "
                "padding reaches the encoder unmasked.",
                confidence=0.8, evidence={"padded_rows": v.padded_rows, "rows": v.rows, "mask_accepted": False},
                fix="def forward(self, input_ids, attention_mask): ... self.encoder(input_ids, attention_mask=attention_mask)")
        if v.mask_effect is None or v.mask_rows_changed < self.min_rows or v.mask_effect >= self.max_effect:
            return None
        if v.output_spread < self.min_output_spread:
            return None
        return self.finding(
            f"Giving {v.mask_rows_changed} padded rows another row's attention mask changed the outputs by "
            f"{num(v.mask_effect, 2)} of their spread across inputs: the model ignores the mask.",
            confidence=0.9,
            evidence={"mask_rows_changed": v.mask_rows_changed, "mask_effect": rnd(v.mask_effect),
                      "padded_rows": v.padded_rows, "output_spread": rnd(v.output_spread)},
            fix="self.encoder(input_ids=input_ids, attention_mask=attention_mask)")
