"""Stream a label column: its type, counts, moments and file order.

Each batch of labels arrives as an Arrow array (text from CSV, numbers,
booleans or lists from JSON Lines / Parquet / Arrow). A missing, empty, NaN
or infinite label, or a column that mixes numbers and text, is bad input: an
:class:`~defib.evidence.readers.InputError` naming the row, since training
on it fails or silently learns nothing from those rows.

:meth:`LabelCounter.update` returns one float key per row (the number, a
code for a text label, a hash for a list) that the duplicate check compares.
The task these labels imply is :func:`defib.evidence.task.infer_task`'s to say.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from defib.evidence.preflight.sampling import UniformSample
from defib.evidence.readers import InputError
from defib.signals.check import LabelSignals, OrderSignals
from defib.signals.run import TOKEN_TASK

MAX_DISTINCT = 10_000    # distinct labels counted; a text column with more is not a label column
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$|^[+-]?(nan|inf|infinity)$"


class LabelCounter:
    """Accumulates :class:`LabelSignals` and the file-order statistics over batches."""

    def __init__(self, column: str, source: str):
        self.column, self.source = column, source
        self.kind: str | None = None
        self.first: tuple[int, str] | None = None        # (row, value) that set the kind, for mixed-type errors
        self.rows = 0
        self.counts: dict = {}
        self.overflow = False
        self.codes: dict[str, int] = {}                  # text label -> code
        self.spelled: set[str] = set()                   # distinct raw spellings of numbers written as text
        self.float_written = False
        self.shift: float | None = None                  # moments are taken around the first value
        self.s1 = self.s2 = self.lag = 0.0
        self.head = self.prev = None
        self.lo, self.hi = math.inf, -math.inf
        self.integral = True
        self.same = 0                                    # neighbours with equal labels
        self.sample = UniformSample()
        self.width: int | None = None                    # multi-hot width, while all lists share one
        self.list_values: set = set()

    # ------------------------------------------------------------ intake
    def update(self, arr: pa.Array, row0: int) -> np.ndarray:
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(arr.type.value_type)
        if arr.null_count:
            self._fail(row0 + first_true(arr.is_null()), "is empty (null)")
        t = arr.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            keys = self._text(arr, row0)
        elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            self._set_kind("number", row0, arr[0].as_py())
            self.float_written |= pa.types.is_floating(t) or pa.types.is_decimal(t)
            keys = self._numbers(arr.cast(pa.float64()).to_numpy(zero_copy_only=False), row0, arr)
        elif pa.types.is_boolean(t):
            self._set_kind("bool", row0, arr[0].as_py())
            keys = self._numbers(arr.cast(pa.int8()).cast(pa.float64()).to_numpy(zero_copy_only=False), row0, arr)
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            self._set_kind("list", row0, str(arr[0].as_py())[:40])
            keys = self._lists(arr, row0)
        else:
            raise InputError(f"{self.source}: column {self.column!r} holds {t} values; labels must be numbers, "
                             "text, true/false or lists")
        self.rows += len(arr)
        return keys

    def _fail(self, row: int, what: str) -> None:
        raise InputError(f"{self.source}: row {row}, column {self.column!r} {what}; every row needs a label "
                         "(drop or fix those rows)")

    def _set_kind(self, kind: str, row: int, value: object) -> None:
        if self.kind is None:
            self.kind, self.first = kind, (row, str(value))
        elif self.kind != kind:
            r0, v0 = self.first
            raise InputError(f"{self.source}: column {self.column!r} mixes label types: row {row} is {kind} "
                             f"({str(value)[:40]!r}) while row {r0} is {self.kind} ({v0[:40]!r})")

    def _text(self, arr: pa.Array, row0: int) -> np.ndarray:
        trimmed = pc.utf8_trim_whitespace(arr)
        empty = pc.equal(trimmed, "")
        if pc.any(empty).as_py():
            self._fail(row0 + first_true(empty), "is empty")
        if self.kind in (None, "list") and pc.all(pc.match_substring_regex(trimmed, r"^\[.*\]$")).as_py():
            return self._json_lists(trimmed, row0)  # "[0, 1, 1]" in a CSV cell: a multilabel row
        isnum = pc.match_substring_regex(trimmed, NUMBER, ignore_case=True)
        n_num = pc.sum(isnum.cast(pa.int64())).as_py() or 0
        if 0 < n_num < len(arr) or (self.kind == "number" and n_num == 0) or (self.kind == "text" and n_num):
            text_wins = self.kind == "text" or (self.kind is None and n_num < len(arr) - n_num)
            odd = pc.invert(isnum) if not text_wins else isnum
            other = isnum if not text_wins else pc.invert(isnum)
            row, row_other = row0 + first_true(odd), row0 + first_true(other) if pc.any(other).as_py() else None
            if row_other is None:
                row_other, v0 = self.first
            else:
                v0 = arr[row_other - row0].as_py()
            raise InputError(f"{self.source}: column {self.column!r} mixes numbers and text: row {row} is "
                             f"{arr[row - row0].as_py()[:40]!r} while row {row_other} is {str(v0)[:40]!r}")
        if n_num:
            self._set_kind("number", row0, arr[0].as_py())
            if len(self.spelled) < MAX_DISTINCT:
                self.spelled.update(pc.unique(trimmed).to_pylist())
            return self._numbers(pc.cast(trimmed, pa.float64()).to_numpy(zero_copy_only=False), row0, trimmed)
        self._set_kind("text", row0, arr[0].as_py())
        enc = pc.dictionary_encode(trimmed)
        batch_codes = np.array([self.codes.setdefault(v, len(self.codes)) for v in enc.dictionary.to_pylist()])
        if len(self.codes) > MAX_DISTINCT:
            raise InputError(f"{self.source}: column {self.column!r} has more than {MAX_DISTINCT:,} distinct text "
                             "values: that is text, not a label (are --text and --label swapped?)")
        keys = batch_codes[enc.indices.to_numpy(zero_copy_only=False)]
        for code, n in zip(*np.unique(keys, return_counts=True)):
            self.counts[int(code)] = self.counts.get(int(code), 0) + int(n)
        self._order(keys.astype(np.float64))
        return keys.astype(np.float64)

    def _json_lists(self, arr: pa.Array, row0: int) -> np.ndarray:
        rows = []
        for i, cell in enumerate(arr.to_pylist()):
            try:
                value = json.loads(cell)
            except ValueError:
                value = None
            if not isinstance(value, list):
                self._fail(row0 + i, f"is {cell[:40]!r}, not a JSON list like the rows before it")
            rows.append(value)
        try:
            lists = pa.array(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise InputError(f"{self.source}: column {self.column!r} mixes types inside its lists "
                             f"(rows {row0}..{row0 + len(rows) - 1})") from None
        self._set_kind("list", row0, arr[0].as_py())
        return self._lists(lists, row0)

    def _numbers(self, y: np.ndarray, row0: int, raw: pa.Array) -> np.ndarray:
        bad = ~np.isfinite(y)
        if bad.any():
            idx = np.flatnonzero(bad)
            more = f" (and {len(idx) - 1} more rows in this part of the file, e.g. row {row0 + idx[1]})" if len(idx) > 1 else ""
            self._fail(row0 + int(idx[0]), f"is {raw[int(idx[0])].as_py()!r}, not a finite number{more}")
        if self.shift is None:
            self.shift = float(y[0])
        z = y - self.shift
        self.s1 += float(z.sum())
        self.s2 += float(z @ z)
        self.lo, self.hi = min(self.lo, float(y.min())), max(self.hi, float(y.max()))
        self.integral = self.integral and bool(np.all(y == np.floor(y)))
        if not self.overflow:
            u, c = np.unique(y, return_counts=True)
            for v, n in zip(u.tolist(), c.tolist()):
                self.counts[v] = self.counts.get(v, 0) + n
            if len(self.counts) > MAX_DISTINCT:
                self.overflow, self.counts = True, {}
        self.sample.add(y)
        self._order(y, z)
        return y

    def _order(self, y: np.ndarray, z: np.ndarray | None = None) -> None:
        """Neighbour statistics in file order, carried across batch boundaries."""
        if self.prev is not None:
            self.same += int(self.prev[0] == y[0])
            if z is not None:
                self.lag += self.prev[1] * float(z[0])
        else:
            self.head = float(z[0]) if z is not None else None
        self.same += int(np.count_nonzero(y[1:] == y[:-1]))
        if z is not None:
            self.lag += float(z[1:] @ z[:-1])
        self.prev = (float(y[-1]), float(z[-1]) if z is not None else 0.0)

    def _lists(self, arr: pa.Array, row0: int) -> np.ndarray:
        rows = arr.to_pylist()
        keys = np.empty(len(rows))
        for i, row in enumerate(rows):
            if not row:
                self._fail(row0 + i, "is an empty list")
            if self.width is None:
                self.width = len(row)
            elif self.width != len(row):
                self.width = -1
            for j, v in enumerate(row):
                if v is None or (isinstance(v, float) and not math.isfinite(v)):
                    self._fail(row0 + i, f"holds {v!r} in its list")
                if len(self.list_values) < MAX_DISTINCT:
                    self.list_values.add(v)
            keys[i] = hash(tuple(row))
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.list_values)
        for row in rows:
            if numeric and self.width and self.width > 0 and set(row) <= {0, 1}:
                for j, v in enumerate(row):
                    self.counts[j] = self.counts.get(j, 0) + int(v)
            else:
                for v in set(row):
                    self.counts[v] = self.counts.get(v, 0) + 1
        self._order(keys)
        return keys

    # ------------------------------------------------------------ results
    def signals(self) -> LabelSignals:
        lab = LabelSignals(column=self.column, kind=self.kind or "number", rows=self.rows)
        names = {code: text for text, code in self.codes.items()}
        whole = self.kind in ("number", "bool") and self.integral
        lab.counts = None if self.overflow else {names.get(k, k) if self.kind == "text" else int(k) if whole else k: n
                                                 for k, n in sorted(self.counts.items(), key=lambda kv: -kv[1])}
        if self.kind in ("number", "bool") and self.rows:
            n = self.rows
            m = self.s1 / n
            lab.mean = self.shift + m
            lab.std = math.sqrt(max(0.0, self.s2 / n - m * m))
            lab.min, lab.max, lab.integral = self.lo, self.hi, self.integral
            lab.float_written = self.float_written or any(("." in s or "e" in s.lower()) for s in self.spelled)
            lab.sample = self.sample.values.tolist()
            by_value: dict[float, list[str]] = {}
            for s in sorted(self.spelled):
                by_value.setdefault(float(s), []).append(s)
            lab.spellings = {label_text(v): s for v, s in by_value.items() if len(s) > 1}
        if self.kind == "list":
            lab.multihot_width = self.width if self.width and self.width > 0 else None
            lab.multihot_values = sorted(v for v in self.list_values if isinstance(v, (int, float)))[:20]
            lab.integral = True
        return lab

    def order(self, task: str) -> OrderSignals | None:
        """How grouped the labels are in file order, against a random order of the same labels."""
        n = self.rows
        if n < 3 or self.kind == "list":
            return None
        if task == "regression":
            m = self.s1 / n
            num = self.lag - m * (2 * self.s1 - self.head - self.prev[1]) + (n - 1) * m * m
            den = self.s2 - n * m * m
            if den <= 0:
                return None
            r = num / den
            expected = -1.0 / (n - 1)
            z = (r - expected) * math.sqrt(n)
            return OrderSignals("lag-1 autocorrelation", r, expected, z, _upper_tail(z), max(0.0, r))
        if self.overflow:
            return None
        return same_neighbour_test(list(self.counts.values()), self.same)


def same_neighbour_test(counts: list[int], same: int) -> OrderSignals | None:
    """Exact mean and variance, under a random order, of the number of neighbours with equal labels.

    S = sum over i of [y_i == y_(i+1)] over the n-1 neighbour pairs. With class
    counts n_k, p = P(a pair is equal) = sum n_k(n_k-1) / n(n-1); pairs that
    share a row are equal with q = sum n_k(n_k-1)(n_k-2) / n(n-1)(n-2); pairs on
    four distinct rows with r = ((sum a_k)^2 - sum a_k(4 n_k - 6)) / n(n-1)(n-2)(n-3),
    a_k = n_k(n_k-1). Then E[S] = (n-1)p and
    Var[S] = (n-1)p(1-p) + 2(n-2)(q - p^2) + (n-2)(n-3)(r - p^2).
    The normal approximation is the runs test for k categories.
    """
    n = sum(counts)
    if n < 4 or len(counts) < 2:
        return None
    a = [c * (c - 1) for c in counts]
    sa = float(sum(a))
    p = sa / (n * (n - 1))
    q = sum(c * (c - 1) * (c - 2) for c in counts) / (n * (n - 1) * (n - 2))
    r = (sa * sa - sum(ak * (4 * c - 6) for ak, c in zip(a, counts))) / (n * (n - 1) * (n - 2) * (n - 3))
    var = (n - 1) * p * (1 - p) + 2 * (n - 2) * (q - p * p) + (n - 2) * (n - 3) * (r - p * p)
    if var <= 0:
        return None
    z = (same - (n - 1) * p) / math.sqrt(var)
    observed = same / (n - 1)
    return OrderSignals("same-neighbour share", observed, p, z, _upper_tail(z), max(0.0, (observed - p) / (1 - p)))


def check_task(task: str, lab: LabelSignals, source: str) -> None:
    """A task given by the user that the labels cannot serve is an input error."""
    per_token = lab.tags is not None
    if task == TOKEN_TASK and not per_token:
        raise InputError(f"{source}: --task {TOKEN_TASK} needs a list of tokens (--text) and a list of tags "
                         f"(--label) per row, or a CoNLL file; column {lab.column!r} holds {lab.kind} labels for text")
    if task != TOKEN_TASK and per_token:
        raise InputError(f"{source}: --task {task} but the texts are lists of tokens with a list of tags each "
                         f"(--task {TOKEN_TASK})")
    if task == "regression" and lab.kind in ("text", "list"):
        raise InputError(f"{source}: --task regression but column {lab.column!r} holds {lab.kind} labels")
    if task == "multilabel" and lab.kind != "list":
        raise InputError(f"{source}: --task multilabel needs list labels (a JSON list per row); column "
                         f"{lab.column!r} holds {lab.kind} labels")
    if task == "classification" and lab.kind == "list":
        raise InputError(f"{source}: --task classification but column {lab.column!r} holds lists (multilabel?)")


def label_text(value: object) -> str:
    """A label value as the report writes it: 1.0 as '1'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def first_true(mask: pa.Array) -> int:
    """The index of the first true value of a boolean array that has one."""
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def _upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))
