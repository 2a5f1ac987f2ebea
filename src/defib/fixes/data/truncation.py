"""Fix for data.truncation: a longer max_length, so distinct texts stay distinct."""

from __future__ import annotations

from defib.fixes.base import Fix, fix_for


@fix_for
class LongerSequences(Fix):
    """Raise the tokenizer's max_length so texts are no longer cut to the same prefix."""

    cause = "data.truncation"
    ceiling = 512  # the fewest tokens a common encoder's positions hold (BERT, RoBERTa's 514 less 2, DeBERTa...)

    @classmethod
    def plan(cls, evidence, finding):
        old = evidence.get("max_length")
        return {"max_length": min(cls.ceiling, max(128, 4 * int(old)))} if old else None

    @classmethod
    def describe(cls, params):
        return f"tokenizer(..., truncation=True, max_length={params['max_length']})"

    def tokenizer_kwargs(self, kwargs):
        if kwargs.get("max_length") and kwargs["max_length"] < self.params["max_length"]:
            kwargs = dict(kwargs, max_length=self.params["max_length"])
        return kwargs
