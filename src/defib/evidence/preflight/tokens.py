"""Load the model's tokenizer and config (never its weights), and stream the texts through the tokenizer.

Every row is encoded once, without truncation, by a copy of the model's fast
tokenizer (batched, in Rust), so its true token length is known; only rows
longer than ``max_length`` are encoded a second time, truncated exactly as
``tokenizer(..., truncation=True, max_length=L)`` would, to find distinct
texts that truncation makes identical. Counts are kept in fixed-size arrays
and keyed samples, so memory does not grow with the data.

A model given by hub name while the hub is offline fails at once with one
line (``HF_HUB_OFFLINE=1``: nothing would be downloaded, and a lookup can hang).
"""

from __future__ import annotations

import json
import os
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from defib.evidence.preflight.sampling import KeyedSample, groups
from defib.evidence.preflight.tags import is_list
from defib.evidence.readers import InputError, check_field_lengths, first_line
from defib.signals.check import ModelConfigSignals, TokenSignals

LENGTH_CAP = 8192           # token lengths counted exactly up to here; longer rows share the last cell
UPPER_SAMPLE_ROWS = 20_000  # rows whose casing is looked at (casing is a property of the corpus, not of each row)
EXAMPLES = 5                # row numbers kept per kind of problem
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
# families whose position ids start after the pad id (RoBERTa's create_position_ids_from_input_ids): of their
# max_position_embeddings (514), pad_token_id + 1 are never a token's position
POSITIONS_AFTER_PAD = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text",
                       "roberta-prelayernorm", "mpnet")


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARS)


def resolve(name: str | os.PathLike, role: str) -> str:
    """A local folder, or a hub name that can load; otherwise an :class:`InputError` at once."""
    text = str(name)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{text}: the {role} must be a folder (with config.json / tokenizer.json), not a file")
        return str(path)
    looks_local = text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text
    if looks_local:
        raise InputError(f"{text}: no such {role} folder")
    if _offline():
        from huggingface_hub import try_to_load_from_cache

        cached = any(isinstance(try_to_load_from_cache(text, f), str)
                     for f in ("tokenizer.json", "tokenizer_config.json", "config.json"))
        if not cached:
            raise InputError(f"{text}: not a local folder, and the model hub is offline (HF_HUB_OFFLINE=1) with "
                             f"no cached copy; pass the path of a downloaded {role}")
    return text


def load_tokenizer(name: str | os.PathLike | Any) -> Any:
    """``AutoTokenizer.from_pretrained(name, use_fast=True)``, or a tokenizer object passed as is; must be fast."""
    if hasattr(name, "backend_tokenizer") or hasattr(name, "is_fast"):
        tok = name
    else:
        from transformers import AutoTokenizer

        where = resolve(name, "tokenizer")
        try:
            tok = AutoTokenizer.from_pretrained(where, use_fast=True)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for a folder it cannot read
            raise InputError(f"{name}: cannot load a tokenizer from it ({first_line(exc)})") from None
    if not getattr(tok, "is_fast", False):
        raise InputError(f"{name}: defib check needs a fast (Rust) tokenizer and this one is {type(tok).__name__}")
    return tok


def load_model_config(name: str | os.PathLike) -> ModelConfigSignals:
    """The model's config.json, read without loading weights; fields stay None when there is none."""
    from transformers import AutoConfig

    where = resolve(name, "model")
    out = ModelConfigSignals(path=str(name))
    raw: dict[str, Any] = {}
    local = Path(where) / "config.json"
    try:
        cfg = AutoConfig.from_pretrained(where)
        # what the file itself says: to_dict() would invent a default id2label of two labels
        raw = json.loads(local.read_text(encoding="utf-8")) if local.exists() else cfg.to_diff_dict()
    except Exception as exc:  # a tokenizer-only folder has no config; anything else unreadable is bad input
        if Path(where).is_dir() and not local.exists():
            return out
        raise InputError(f"{name}: cannot read the model's config ({first_line(exc)})") from None
    out.model_type = getattr(cfg, "model_type", None)
    out.vocab_size = getattr(cfg, "vocab_size", None)
    out.max_positions = getattr(cfg, "max_position_embeddings", None)
    pad = getattr(cfg, "pad_token_id", None)
    if out.max_positions and out.model_type in POSITIONS_AFTER_PAD and isinstance(pad, int):
        out.max_positions -= pad + 1
    out.hidden_size = getattr(cfg, "hidden_size", None)
    heads = [a for a in raw.get("architectures") or [] if "Classification" in a]
    if "id2label" in raw or heads:
        out.num_labels = len(getattr(cfg, "id2label", {}) or {}) or None
    return out


def pick_max_length(tok: Any, model: ModelConfigSignals | None, given: int | None) -> tuple[int, str]:
    """(max_length, where it came from); a given length longer than the model's positions is an input error."""
    positions = model.max_positions if model else None
    if given is not None:
        if given < 2:
            raise InputError(f"--max-length {given} leaves no room for the text")
        if positions and given > positions:
            raise InputError(f"--max-length {given} is longer than the model's {positions} positions "
                             f"({model.path}); training would fail")
        return given, "--max-length"
    tok_max = getattr(tok, "model_max_length", None)
    if tok_max and tok_max < 1_000_000 and (not positions or tok_max <= positions):
        return int(tok_max), "the tokenizer's model_max_length"
    if positions:
        return int(positions), "the model's position embeddings"
    return 512, "a default of 512 (the tokenizer and model set none)"


class TokenCounter:
    """Accumulates :class:`TokenSignals` over batches of texts (Arrow string arrays)."""

    def __init__(self, tok: Any, max_length: int, max_length_source: str, *, pair: bool,
                 model: ModelConfigSignals | None, source: str, columns: list[str]):
        from tokenizers import Tokenizer

        spec = tok.backend_tokenizer.to_str()
        self.full = Tokenizer.from_str(spec)
        self.full.no_truncation()
        self.full.no_padding()
        self.cut = Tokenizer.from_str(spec)
        self.cut.no_padding()
        self.cut.enable_truncation(max_length)
        self.max_length, self.source, self.columns = max_length, source, columns
        self.model_vocab = model.vocab_size if model else None
        self.lengths = np.zeros(LENGTH_CAP + 1, dtype=np.int64)
        self.collide = KeyedSample()
        self.upper_rows = self.upper_seen = 0
        self.s = TokenSignals(
            tokenizer=f"{type(tok).__name__} ({getattr(tok, 'name_or_path', '') or 'in memory'})",
            algorithm=json.loads(spec).get("model", {}).get("type"), lowercases=_lowercases(tok),
            vocab_size=len(tok), max_length=max_length, max_length_source=max_length_source, pair=pair,
            unk_id=tok.unk_token_id, vocab_upper_share=_upper_share(tok.get_vocab()))
        self._check_specials(tok)

    def _check_specials(self, tok: Any) -> None:
        """Tokens the tokenizer declares (CLS/SEP or BOS/EOS) must appear in what it encodes."""
        declared = [t for t in (tok.cls_token or tok.bos_token, tok.sep_token or tok.eos_token) if t]
        probe = ("hello world", "hello") if self.s.pair else "hello world"
        ids = self.full.encode(*probe if isinstance(probe, tuple) else (probe,)).ids
        self.s.specials_missing = [t for t in declared if tok.convert_tokens_to_ids(t) not in ids]

    def update(self, texts: pa.Array, pairs: pa.Array | None, row0: int) -> np.ndarray:
        """Encode one batch; return a hash per row of its text (or pair), for the duplicate check.

        ``texts`` may hold a list of words per row (token classification): they are encoded as
        ``tokenizer(words, is_split_into_words=True)`` encodes them, and joined with spaces for the
        checks that read text (empty rows, casing, field length, duplicates).
        """
        words = texts.to_pylist() if is_list(texts.type) else None
        if words is not None:
            texts = pc.binary_join(texts, " ")
        columns = [texts] if pairs is None else [texts, pairs]
        cols = [pc.fill_null(c, "") if c.null_count else c for c in columns]
        check_field_lengths(self.source, self.columns, cols, row0)  # in-memory columns never met the reader
        empty = None
        for c in cols:
            e = pc.equal(pc.utf8_trim_whitespace(c), "")
            empty = e if empty is None else pc.or_(empty, e)
        self._note_empty(np.flatnonzero(empty.to_numpy(zero_copy_only=False)), row0)
        if self.upper_seen < UPPER_SAMPLE_ROWS:
            head = cols[0].slice(0, UPPER_SAMPLE_ROWS - self.upper_seen)
            self.upper_rows += pc.sum(pc.not_equal(head, pc.utf8_lower(head)).cast(pa.int64())).as_py() or 0
            self.upper_seen += len(head)
        lists = [c.to_pylist() for c in cols]
        inputs = lists[0] if pairs is None else list(zip(*lists))
        keys = np.fromiter(map(hash, inputs), dtype=np.int64, count=len(inputs))
        encoded = words if words is not None else inputs
        ids = [e.ids for e in self._encode(self.full, encoded, words is not None)]
        self._count(ids, encoded, words is not None, keys, row0)
        return keys

    @staticmethod
    def _encode(tokenizer: Any, inputs: list, pretokenized: bool) -> list:
        """Batched encoding in Rust; ``encode_batch_fast`` (tokenizers >= 0.20) skips the character offsets."""
        fast = getattr(tokenizer, "encode_batch_fast", None)
        encode = fast if fast is not None else tokenizer.encode_batch
        return encode(inputs, is_pretokenized=pretokenized)

    def _note_empty(self, idx: np.ndarray, row0: int) -> None:
        self.s.empty_rows += len(idx)
        room = EXAMPLES - len(self.s.empty_examples)
        self.s.empty_examples += [row0 + int(i) for i in idx[:room]]

    def _count(self, ids: list[list[int]], inputs: list, pretokenized: bool, keys: np.ndarray, row0: int) -> None:
        s = self.s
        lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))  # (B,)
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lens.sum()))  # (sum of lengths,)
        self.lengths += np.bincount(np.minimum(lens, LENGTH_CAP), minlength=LENGTH_CAP + 1)
        s.rows += len(ids)
        s.tokens += len(flat)
        if len(flat):
            s.max_id = max(s.max_id, int(flat.max()))
            if self.model_vocab:
                s.ids_out_of_vocab += int(np.count_nonzero(flat >= self.model_vocab))
        if s.unk_id is not None and len(flat):
            is_unk = flat == s.unk_id
            n_unk = int(np.count_nonzero(is_unk))
            if n_unk:
                rows = np.unique(np.repeat(np.arange(len(ids)), lens)[is_unk])
                s.unk_tokens += n_unk
                s.rows_with_unk += len(rows)
                s.unk_examples += [row0 + int(r) for r in rows[:EXAMPLES - len(s.unk_examples)]]
        long = np.flatnonzero(lens > self.max_length)
        if len(long):
            s.rows_truncated += len(long)
            s.tokens_cut += int((lens[long] - self.max_length).sum())
            cut = self._encode(self.cut, [inputs[i] for i in long], pretokenized)
            id_keys = np.fromiter((hash(tuple(e.ids)) for e in cut), dtype=np.int64, count=len(long))
            self.collide.add(id_keys, keys[long], row0 + long)

    def signals(self) -> TokenSignals:
        s = self.s
        s.length_counts = self.lengths[:_last_nonzero(self.lengths) + 1].tolist()
        s.text_upper_share = self.upper_rows / self.upper_seen if self.upper_seen else None
        id_keys, text_keys, rows = self.collide.arrays()
        starts, sizes = groups(id_keys)
        colliding, example = 0, []
        if len(starts):
            mixed = np.minimum.reduceat(text_keys, starts) != np.maximum.reduceat(text_keys, starts)  # (groups,)
            colliding = int(sizes[mixed].sum())
            in_mixed = np.repeat(mixed, sizes)  # (rows,) a text tokenizes one way, so it sits in one group
            s.colliding_texts = int(np.unique(text_keys[in_mixed]).size) * self.collide.scale
            if mixed.any():
                first = int(np.flatnonzero(mixed)[0])
                example = rows[starts[first]:starts[first] + min(int(sizes[first]), EXAMPLES)].tolist()
        s.colliding_rows = colliding * self.collide.scale
        s.collision_examples = [int(r) for r in example]
        return s


def _lowercases(tok: Any) -> bool | None:
    norm = tok.backend_tokenizer.normalizer
    return None if norm is None else norm.normalize_str("ABC") == "abc"


def _upper_share(vocab: dict[str, int]) -> float | None:
    words = [w for w in vocab if any(ch.isalpha() for ch in w)]
    return sum(1 for w in words if w != w.lower()) / len(words) if words else None


def _last_nonzero(a: np.ndarray) -> int:
    nz = np.flatnonzero(a)
    return int(nz[-1]) if len(nz) else 0
