"""E002: distinct inputs become identical after tokenization at prediction time."""

from __future__ import annotations

from defib.signals.predict import PredictSignals
from defib.rules.base import Finding, Rule, Severity, register


@register
class IdenticalInputs(Rule):
    """Different texts reach the model as the same token ids, so they must get the same prediction.

    What it detects:
        At prediction time, rows whose texts differ but whose token ids are
        identical after tokenization (truncation at ``max_length``, an
        uncased vocabulary, unknown characters), when they are at least
        ``min_share`` of the distinct texts.

    Why it flattens predictions:
        The model never sees what tells these rows apart: if the texts
        differ only after the first ``max_length`` tokens (a shared
        boilerplate prefix, a long template), every one of them gets one and
        the same prediction.

    Example:
        Reviews that all start with the same 128-token disclaimer, predicted
        with ``max_length=128``.

    Fix:
        Raise ``max_length`` (up to the model's limit), strip the shared
        prefix, or put the distinguishing text first; train with the same
        preprocessing.
    """

    code = "E002"
    cause = "eval.inputs"
    title = "Distinct inputs identical after tokenization"
    severity = Severity.WARNING
    needs = ("distinct_texts", "distinct_encodings")
    stage = "predict"

    min_share = 0.01   # distinct texts lost to collisions: 1% of the inputs is a pattern, not an accident

    def check(self, s: PredictSignals) -> Finding | None:
        lost = s.distinct_texts - s.distinct_encodings
        if s.distinct_texts == 0 or lost / s.distinct_texts < self.min_share:
            return None
        at_max = (f"; {s.rows_at_max_length} rows fill max_length={s.max_length}" if s.max_length and
                  s.rows_at_max_length else "")
        return self.finding(
            f"{s.distinct_texts} distinct inputs become {s.distinct_encodings} distinct token sequences "
            f"({lost} lost){at_max}: rows such as {', '.join(f'{a + 1} and {b + 1}' for a, b in s.collisions[:3])} "
            "get the same prediction whatever their text says.",
            confidence=0.85, evidence={"distinct_texts": s.distinct_texts, "distinct_encodings": s.distinct_encodings,
                                       "rows_at_max_length": s.rows_at_max_length, "max_length": s.max_length,
                                       "examples": [[a + 1, b + 1] for a, b in s.collisions[:5]]},
            fix="Raise --max-length, or move the distinguishing text to the start of each input.")
