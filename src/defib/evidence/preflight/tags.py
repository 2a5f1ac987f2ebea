"""Stream a token-level label column (a list of tags per row) against the rows' token lists.

For token classification (NER, tagging) each row holds a list of tokens and a
list of tags, one per token. What the check rules need from them: the tag set
and how many *tokens* carry each tag (the collapse to "every token is O" is a
token-level imbalance, invisible in per-row counts), and the rows whose tag
list is not as long as their token list (tags already spread over word pieces,
or shifted by a dropped token): training either refuses those rows or learns
from tags that belong to other tokens.

A row whose labels are not a list, a missing tag, or a tag that is not a
string or a whole number is bad input: an
:class:`~defib.evidence.readers.InputError` naming the row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from defib.evidence.preflight.labels import MAX_DISTINCT, first_true
from defib.evidence.readers import InputError
from defib.signals.check import LabelSignals

EXAMPLES = 5               # misaligned rows kept as examples


def is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


class TagCounter:
    """Accumulates the tag counts and the misaligned rows over batches; :meth:`signals` gives :class:`LabelSignals`."""

    def __init__(self, column: str, source: str):
        self.column, self.source = column, source
        self.rows = self.tags = self.misaligned = 0
        self.kind: str | None = None                    # "text" | "number": the tags' type, once seen
        self.counts: dict[str | int, int] = {}
        self.examples: list[dict[str, int]] = []

    def update(self, arr: pa.Array, lengths: np.ndarray, row0: int) -> np.ndarray:
        """Count one batch of tag lists against each row's token count; return a hash per row (duplicate check)."""
        if not is_list(arr.type):
            raise InputError(f"{self.source}: row {row0}, column {self.column!r} holds "
                             f"{str(arr[0].as_py())[:40]!r}, not a list of tags (one per token)")
        if arr.null_count:
            self._fail(row0 + first_true(arr.is_null()), "has no tags (null)")
        flat = pc.list_flatten(arr)
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        if flat.null_count:
            self._fail(row0 + int(parents[first_true(flat.is_null())]), "holds a missing tag (null)")
        if len(flat):
            flat = self._whole(flat, parents, row0)
            values = pc.value_counts(flat)
            for v, n in zip(values.field("values").to_pylist(), values.field("counts").to_pylist()):
                self.counts[v] = self.counts.get(v, 0) + n
            if len(self.counts) > MAX_DISTINCT:
                raise InputError(f"{self.source}: column {self.column!r} holds more than {MAX_DISTINCT:,} distinct "
                                 "tags: that is text, not tags (are --text and --label swapped?)")
        n_tags = pc.list_value_length(arr).to_numpy(zero_copy_only=False)  # (rows,)
        bad = np.flatnonzero(n_tags != lengths)
        self.misaligned += len(bad)
        self.examples += [{"row": row0 + int(i), "tokens": int(lengths[i]), "tags": int(n_tags[i])}
                          for i in bad[:EXAMPLES - len(self.examples)]]
        self.rows += len(arr)
        self.tags += len(flat)
        return np.fromiter((hash(tuple(r)) for r in arr.to_pylist()), dtype=np.float64, count=len(arr))

    def _whole(self, flat: pa.Array, parents: np.ndarray, row0: int) -> pa.Array:
        """The tags as strings or int64; floats are accepted when whole (JSON writers may emit 3.0)."""
        t = flat.type
        if pa.types.is_dictionary(t):
            flat, t = flat.cast(t.value_type), t.value_type
        if pa.types.is_floating(t):
            odd = pc.invert(pc.equal(pc.floor(flat), flat))
            if pc.any(odd).as_py():
                i = first_true(odd)
                self._fail(row0 + int(parents[i]), f"holds the tag {flat[i].as_py()!r}; tags must be strings or "
                                                   "whole numbers (class ids)")
            flat, t = flat.cast(pa.int64()), pa.int64()
        kind = "text" if pa.types.is_string(t) or pa.types.is_large_string(t) else \
            "number" if pa.types.is_integer(t) else None
        if kind is None:
            self._fail(row0 + int(parents[0]), f"holds {t} tags ({str(flat[0].as_py())[:40]!r}); tags must be "
                                               "strings or whole numbers (class ids)")
        if self.kind not in (None, kind):
            self._fail(row0 + int(parents[0]), f"holds {kind} tags while the rows before hold {self.kind} tags")
        self.kind = kind
        return flat

    def _fail(self, row: int, what: str) -> None:
        raise InputError(f"{self.source}: row {row}, column {self.column!r} {what}")

    def signals(self) -> LabelSignals:
        counts = dict(sorted(self.counts.items(), key=lambda kv: -kv[1]))
        return LabelSignals(column=self.column, kind="list", rows=self.rows, counts=counts, tags=self.tags,
                            misaligned_rows=self.misaligned, misaligned_examples=list(self.examples))
