"""M005: the head reads the encoder's vector at a padded position."""

from __future__ import annotations

from defib.rules.base import Finding, Rule, Severity, register
from defib.rules.fmt import recent, rnd
from defib.rules.measures import collapsed, not_learning
from defib.signals.run import Signals


@register
class HeadReadsPadding(Rule):
    """The vector entering the head is, in most rows, the encoder's vector at a padding position.

    What it detects:
        On sampled steps, each row of the head's input is matched against the
        positions of the same row of the encoder's last hidden state (an exact
        copy, dropout aside). When most rows of a padded batch were copied from
        a position the attention mask marks as padding, the sentence vector is
        read from padding: typically ``last_hidden_state[:, -1]`` (the last
        position) with a tokenizer that pads on the right. Only when the run
        shows the harm (predictions flat, or the loss no better than the
        constant predictor's): under a correct attention mask a pad position
        still attends to the whole text, and on the real MiniLM reading it
        trained as well as [CLS] (bench/faults rt_meanpool_last_token).

    Why it flattens predictions:
        Padding tokens are masked out as keys, so what the encoder writes at a
        pad position is the pad token's own embedding lightly mixed with the
        sentence: nearly the same vector for every text of a given length. The
        head sees a vector that says little about the text and falls back to
        the average label; only the longest row of each batch, which has no
        pad, is read properly.

    Example:
        ``pooled = out.last_hidden_state[:, -1]`` with ``padding=True`` on a
        BERT tokenizer (``padding_side="right"``).

    Fix:
        Read the [CLS] position, ``out.last_hidden_state[:, 0]``, or each row's
        last real token, ``h[torch.arange(len(h)), attention_mask.sum(1) - 1]``,
        or a mean over the real tokens: ``(h * m).sum(1) / m.sum(1)`` with
        ``m = attention_mask.unsqueeze(-1)``.
    """

    code = "M005"
    cause = "model.pooling"
    title = "Sentence representation read from a padding position"
    severity = Severity.ERROR
    needs = ("model",)

    # Share of a batch's rows read from padding, averaged over the recent sampled steps. A right-padded batch
    # has a pad at the end of every row but its longest; a correct pooling reads padding in no row.
    min_share = 0.5
    min_samples = 2  # sampled steps with padded batches before the share means anything

    def check(self, s: Signals) -> Finding | None:
        m = s.model
        shares = recent(m.head_input_pad_share, 3)
        if len(shares) < self.min_samples:
            return None
        share = sum(shares) / len(shares)
        if share < self.min_share:
            return None
        if not (collapsed(s) or not_learning(s)):
            # a padded position still attends to the whole text under a correct mask: reading it can train as
            # well as [CLS] (bench/faults rt_meanpool_last_token: macro-F1 0.846 against 0.849), so it is a
            # cause only when the run shows the harm
            return None
        spread = recent(m.head_input_spread, 1)
        return self.finding(
            f"In {share:.0%} of the rows of recent padded batches the head's input is the encoder's vector at a "
            f"padding position: the sentence vector is read from padding, not from the text.",
            confidence=0.9, where=m.head_input_where,
            evidence={"rows_read_from_padding": rnd(share), "samples": len(shares),
                      "head_input_spread": rnd(spread[0]) if spread else None},
            fix="pooled = outputs.last_hidden_state[:, 0]  # [CLS], or a masked mean over the real tokens")
