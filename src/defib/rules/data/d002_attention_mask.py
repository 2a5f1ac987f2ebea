"""D002: padded batches reach the model without a usable attention mask."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.signals.run import Signals


@register
class PaddingNotMasked(Rule):
    """Padding reaches the model unmasked, or the mask is wrong.

    What it detects:
        In the model's inputs: batches whose rows end in ``pad_token_id`` while
        no ``attention_mask`` is passed, a mask that is all ones although the
        batch has padding, or a mask that is 1 exactly on the padding
        (inverted).

    Why it flattens predictions:
        Without a mask every token attends to the pads, so a short text is
        mostly padding to the model and texts of similar length look alike;
        with an inverted mask the model attends only to padding, which is the
        same for every input. Predictions drift towards one value. Padding to
        ``max_length`` *with* a correct mask is harmless (contrary to a common
        claim): defib checks the mask, not the padding.

    Example:
        ``logits = model(batch["input_ids"])  # attention_mask dropped``

    Fix:
        Pass the tokenizer's mask: ``model(input_ids=ids, attention_mask=mask)``
        (``model(**enc)`` does); if you build masks yourself, 1 means "attend".
    """

    code = "D002"
    cause = "data.attention_mask"
    title = "Padding not masked, or the mask is wrong"
    severity = Severity.ERROR
    needs = ("data",)

    min_share = 0.5   # share of padded batches with the problem

    def check(self, s: Signals) -> Finding | None:
        d = s.data
        if d.batches_with_pad == 0:
            return None
        kinds = {"no attention_mask was passed": d.batches_pad_no_mask,
                 "the attention_mask is all ones": d.batches_mask_all_ones_with_pad,
                 "the attention_mask is inverted (1 on the padding)": d.batches_mask_inverted}
        what, count = max(kinds.items(), key=lambda kv: kv[1])
        share = count / d.batches_with_pad
        if share < self.min_share:
            return None
        return self.finding(
            f"{count} of {d.batches_with_pad} padded batches reached the model but {what}, so the model "
            f"attends to pad tokens (pad_token_id={d.pad_token_id}).",
            confidence=0.9 if "inverted" in what else 0.85,
            evidence={"padded_batches": d.batches_with_pad, "no_mask": d.batches_pad_no_mask,
                      "mask_all_ones": d.batches_mask_all_ones_with_pad, "mask_inverted": d.batches_mask_inverted,
                      "pad_token_id": d.pad_token_id},
            where=d.mask_where,
            fix="model(input_ids=batch['input_ids'], attention_mask=batch['attention_mask'])")
