"""D110: padding every row to max_length wastes most of the compute."""

from __future__ import annotations

import numpy as np

from defib.signals.check import CheckSignals
from defib.rules.base import Finding, Rule, Severity, register


@register
class PaddingWaste(Rule):
    """Padding to ``max_length`` against dynamic padding: tokens and estimated compute.

    What it detects:
        From the token-length histogram (lengths capped at ``max_length``):
        whether padding to ``max_length`` costs at least ``min_saving`` times the
        tokens of dynamic padding. It compares the tokens of padding every row to ``max_length``, against padding
        each batch of ``batch_size`` random rows to its own longest row
        (``DataCollatorWithPadding``), whose expected length is
        ``sum_l l * (F(l)^B - F(l-1)^B)``; and the encoder compute of both,
        per layer ``24 h^2 T + 4 h T^2`` for ``T`` tokens of width ``h``.

    Why it flattens predictions:
        It does not: with a correct attention mask, padding changes no
        prediction. It only costs time, which is why this is a note with no
        cause code; padding *without* a mask is the run-time rule D002.

    Example:
        ``tokenizer(texts, padding="max_length", max_length=512)`` on tweets.

    Fix:
        ``tokenizer(texts, truncation=True, max_length=L)`` without padding,
        and ``DataCollatorWithPadding(tokenizer)`` in the DataLoader or Trainer.
    """

    code = "D110"
    cause = None
    title = "Padding to max_length wastes compute"
    severity = Severity.INFO
    needs = ("tokens",)
    stage = "check"

    batch_size = 32       # rows per batch assumed for dynamic padding
    min_saving = 1.5      # pad-to-max tokens / dynamic-padding tokens before it is worth a note

    def check(self, s: CheckSignals) -> Finding | None:
        t = s.tokens
        L = t.max_length
        counts = np.asarray(t.length_counts, dtype=np.float64)
        if not t.rows or counts.sum() == 0:
            return None
        capped = np.zeros(L + 1)
        capped[:min(len(counts), L + 1)] = counts[:L + 1]
        capped[L] += counts[L + 1:].sum()              # rows longer than L are cut to L
        lengths = np.arange(L + 1)
        real = float((capped * lengths).sum())
        padded = float(t.rows * L)
        waste = 1 - real / padded
        cdf = np.cumsum(capped) / capped.sum()
        p_max = np.diff(np.concatenate([[0.0], cdf ** self.batch_size]))  # P(longest row of a batch = l)
        dynamic = float(t.rows * (p_max * lengths).sum())
        if padded < self.min_saving * dynamic:
            return None
        h = s.model.hidden_size if s.model and s.model.hidden_size else 768

        def cost(T: np.ndarray | float) -> np.ndarray | float:
            return 24 * h * h * T + 4 * h * T * T

        compute = cost(L) / float((p_max * cost(lengths)).sum())
        return self.finding(
            f"Padding every row to max_length={L} would make {waste:.0%} of the tokens padding; dynamic padding "
            f"(batches of {self.batch_size}) needs {padded / max(dynamic, 1):.1f}x fewer tokens and about "
            f"{compute:.1f}x less encoder compute. With an attention mask this costs time, not accuracy.",
            confidence=0.9,
            evidence={"tokens_real": int(real), "tokens_pad_to_max": int(padded), "tokens_dynamic": int(dynamic),
                      "padding_share": round(waste, 4), "compute_ratio": round(compute, 2),
                      "batch_size": self.batch_size, "hidden_size": h},
            fix="tokenizer(texts, truncation=True, max_length=L); DataCollatorWithPadding(tokenizer)")
