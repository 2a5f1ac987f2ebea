"""Tiny checkpoints of the encoder families people fine-tune, each with its own kind of tokenizer, built offline.

defib must read ids, masks, pad ids and special tokens from the model's own
config and tokenizer, never from BERT's numbers (pad 0, [CLS] 101, [SEP] 102),
and group parameters by each family's own names. So each family here gets a
random model of its real architecture (hidden 32, 2 layers) and a tokenizer of
the kind its real checkpoints ship, trained in well under a second on a few
hundred STS-B sentences plus the words of the synthetic task
(``rules.helpers.sentences``):

- RoBERTa: byte-level BPE, ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, no token type ids (``type_vocab_size`` 1);
- XLM-R: the same ids and template, from a Unigram (SentencePiece) model;
- DistilBERT, ELECTRA: WordPiece, ``[PAD]`` 0 (DistilBERT takes no token type ids);
- DeBERTa-v2 (v3 style: relative attention, ``type_vocab_size`` 0): Unigram, ``[PAD]`` 0, ``[CLS]`` 1, ``[SEP]`` 2;
- ModernBERT: byte-level BPE with ``[CLS]``/``[SEP]``/``[PAD]`` at the end of the vocabulary (a large pad id).

A folder holds the bare encoder and its tokenizer, saved the way
``save_pretrained`` saves a real one, so ``AutoTokenizer``/``AutoModel*`` load it
as they would a downloaded checkpoint. A plain module (not a conftest), so
tests/conftest.py can share :func:`look_pretrained`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

FAMILIES = ("roberta", "xlm-roberta", "distilbert", "electra", "deberta-v2", "modernbert")
TOKENIZER_OF = {"roberta": "roberta", "xlm-roberta": "xlmr", "distilbert": "wordpiece", "electra": "wordpiece",
                "deberta-v2": "unigram", "modernbert": "modernbert"}
WITHOUT_TYPE_IDS = ("roberta", "xlm-roberta", "distilbert", "modernbert")  # their tokenizers return none
CORPUS_ROWS = 300  # STS-B training pairs the tokenizers learn from
VOCAB = 600


def look_pretrained(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Jitter every LayerNorm away from its default init (ones / zeros), as pretraining leaves them.

    defib flags an encoder whose LayerNorms sit exactly at the default init as
    never pretrained; a random tiny checkpoint must not look like that.
    """
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.add_(torch.randn(mod.weight.shape, generator=gen) * 0.05)
                if mod.bias is not None:  # ModernBERT's norms have none
                    mod.bias.add_(torch.randn(mod.bias.shape, generator=gen) * 0.02)


def corpus() -> list[str]:
    """Real sentences (STS-B) and every word of the synthetic regression task."""
    from rules.helpers import FILL, NEG, POS, sentences

    from defib.demos.data import load_stsb

    d = load_stsb("train")
    return (d.sentence1[:CORPUS_ROWS] + d.sentence2[:CORPUS_ROWS] + [t for t, _ in sentences(200)]
            + [" ".join(FILL + POS + NEG)] * 5)


def train_tokenizer(kind: str, texts: list[str]) -> tuple[Any, dict[str, str]]:
    """(a ``tokenizers.Tokenizer`` of ``kind`` trained on ``texts``, its special tokens by role).

    Kinds: roberta, xlmr, wordpiece, unigram, modernbert.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind in ("roberta", "xlmr"):
        specials = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                    "mask_token": "<mask>", "cls_token": "<s>", "sep_token": "</s>"}
        order = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        if kind == "roberta":
            tok = Tokenizer(models.BPE(unk_token="<unk>"))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=order,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        else:
            tok = Tokenizer(models.Unigram())
            tok.pre_tokenizer = pre_tokenizers.Metaspace()
            tok.decoder = decoders.Metaspace()
            trainer = trainers.UnigramTrainer(vocab_size=VOCAB, special_tokens=order, unk_token="<unk>")
        tok.train_from_iterator(texts, trainer)
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                          ("<s>", tok.token_to_id("<s>")))
    elif kind in ("wordpiece", "unigram"):
        order = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if kind == "wordpiece"
                 else ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"])  # DeBERTa-v3's order
        specials = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                    "mask_token": "[MASK]"}
        if kind == "wordpiece":
            tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
            tok.normalizer = normalizers.BertNormalizer(lowercase=True)
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tok.decoder = decoders.WordPiece()
            trainer = trainers.WordPieceTrainer(vocab_size=VOCAB, special_tokens=order)
        else:
            tok = Tokenizer(models.Unigram())
            tok.pre_tokenizer = pre_tokenizers.Metaspace()
            tok.decoder = decoders.Metaspace()
            trainer = trainers.UnigramTrainer(vocab_size=VOCAB, special_tokens=order, unk_token="[UNK]")
        tok.train_from_iterator(texts, trainer)
        tok.post_processor = _bert_template(tok)
    elif kind == "modernbert":
        specials = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                    "mask_token": "[MASK]"}
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=VOCAB,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok.add_special_tokens(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])  # appended: ids at the end
        tok.post_processor = _bert_template(tok)
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    return tok, specials


def _bert_template(tok: Any) -> Any:
    from tokenizers import processors

    ids = [("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))]
    return processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                         special_tokens=ids)


def config_for(family: str, tok: Any) -> Any:
    """A tiny random config of ``family`` whose vocabulary and special ids are the tokenizer's."""
    from transformers import (DebertaV2Config, DistilBertConfig, ElectraConfig, ModernBertConfig, RobertaConfig,
                              XLMRobertaConfig)

    ids = {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id}
    # std 0.2, as the tiny BERT of conftest.py: an lr of 1e-3 must be a moderate step for these weights
    width = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "initializer_range": 0.2}
    if family in ("roberta", "xlm-roberta"):
        cls = RobertaConfig if family == "roberta" else XLMRobertaConfig
        # positions start after the pad id, as in the real checkpoints (514 for 512 tokens)
        return cls(**ids, **width, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                   max_position_embeddings=64 + tok.pad_token_id + 1, type_vocab_size=1)
    if family == "distilbert":
        return DistilBertConfig(**ids, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64,
                                initializer_range=0.2)
    if family == "electra":
        return ElectraConfig(**ids, **width, embedding_size=16, max_position_embeddings=64)
    if family == "deberta-v2":
        return DebertaV2Config(**ids, **width, max_position_embeddings=64, type_vocab_size=0, relative_attention=True,
                               position_buckets=32, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm",
                               position_biased_input=False)
    if family == "modernbert":
        return ModernBertConfig(**ids, **width, max_position_embeddings=64, bos_token_id=tok.cls_token_id,
                                eos_token_id=tok.sep_token_id, cls_token_id=tok.cls_token_id,
                                sep_token_id=tok.sep_token_id, global_attn_every_n_layers=2, local_attention=16)
    raise ValueError(f"unknown family {family!r}")


def build_checkpoint(family: str, out: Path, tokenizers: dict[str, Any]) -> Path:
    """Save a tiny random ``family`` encoder (looking pretrained) and its tokenizer to ``out``.

    ``tokenizers`` caches one trained tokenizer per kind across families.
    """
    from transformers import AutoModel, PreTrainedTokenizerFast

    kind = TOKENIZER_OF[family]
    if kind not in tokenizers:
        tokenizers[kind] = train_tokenizer(kind, corpus())
    backend, specials = tokenizers[kind]
    names = (["input_ids", "attention_mask"] if family in WITHOUT_TYPE_IDS
             else ["input_ids", "token_type_ids", "attention_mask"])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=64, model_input_names=names, **specials)
    torch.manual_seed(0)
    model = AutoModel.from_config(config_for(family, tok))
    look_pretrained(model, torch.Generator().manual_seed(0))
    model.config.initializer_range = 0.02  # what a real checkpoint says, and so how from_pretrained draws a new head
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
