"""D102 (check): the tokenizer does not belong to the model, or to the text.

Planted: a model config with a smaller vocabulary than the tokenizer; a
tokenizer that declares [CLS]/[SEP] but does not add them; text the vocabulary
cannot spell ([UNK]); a tokenizer that keeps case on an uncased vocabulary.
Near-misses: the model's own tokenizer on plain English; a handful of [UNK]s.
"""

from __future__ import annotations

import json

from checkdata import check, find, model_copy, texts
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from defib.rules.base import Severity

SPECIALS = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"}


def _edited_tokenizer(model_dir, edit):
    spec = json.loads(AutoTokenizer.from_pretrained(str(model_dir)).backend_tokenizer.to_str())
    edit(spec)
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), **SPECIALS)


def test_ids_beyond_the_embedding_table_fire(tiny_model_dir, tmp_path):
    small = model_copy(tiny_model_dir, tmp_path / "small_vocab", vocab_size=1000)
    f = find(check(texts(50), [i % 2 for i in range(50)], small), "D102")
    assert f is not None and f.severity == Severity.ERROR
    assert f.evidence["model_vocab"] == 1000 and "embedding table" in f.message


def test_missing_special_tokens_fire(tiny_model_dir):
    tok = _edited_tokenizer(tiny_model_dir, lambda spec: spec.update(post_processor=None))
    f = find(check(texts(50), [i % 2 for i in range(50)], tiny_model_dir, tokenizer=tok), "D102")
    assert f is not None and f.evidence["specials_missing"] == ["[CLS]", "[SEP]"]


def test_text_the_vocab_cannot_spell_fires(tiny_model_dir):
    rows = [f"{t} 🦜🦩☃" for t in texts(60)]
    f = find(check(rows, [i % 2 for i in range(60)], tiny_model_dir), "D102")
    assert f is not None and f.evidence["unk_share"] > 0.05 and f.severity == Severity.ERROR


def test_cased_text_through_an_uncased_vocab_without_lowercasing_fires(tiny_model_dir):
    tok = _edited_tokenizer(tiny_model_dir, lambda spec: spec["normalizer"].update(lowercase=False))
    rows = [t.title() for t in texts(60)]
    f = find(check(rows, [i % 2 for i in range(60)], tiny_model_dir, tokenizer=tok), "D102")
    assert f is not None and any("uncased" in p for p in f.evidence["problems"])


def test_own_tokenizer_on_plain_english_is_silent(tiny_model_dir):
    rows = [t.capitalize() for t in texts(100)]
    assert find(check(rows, [i % 2 for i in range(100)], tiny_model_dir), "D102") is None


def test_a_handful_of_unknown_tokens_is_silent(tiny_model_dir):
    rows = texts(200)
    rows[0] += " 🦜"
    d = check(rows, [i % 2 for i in range(200)], tiny_model_dir)
    assert find(d, "D102") is None
