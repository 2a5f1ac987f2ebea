"""A checkpoint folder loaded as a sequence classifier (what ``defib probe`` probes) or as a bare encoder (whose features a run's label control reads).

Both pass the same checks on the folder (weight format, files) and fail the
same way: a ProbeInputError that says what is wrong with the folder.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

from torch import nn

from defib.evidence import weights
from defib.evidence.model_files import check_model_files
from defib.evidence.probes.data import ProbeInputError
from defib.evidence.readers import first_line

T = TypeVar("T")
SYNC_LOAD_ENV = "HF_DEACTIVATE_ASYNC_LOAD"  # transformers 5 loads weights on a thread pool unless this is set


def load_classifier(path: str, task: str | None, labels: list | None) -> tuple[nn.Module, Any]:
    """A local checkpoint as a sequence classifier; a bare encoder gets a fresh head sized for the labels.

    ``task`` is the one given or inferred from the labels (None without data: a regression head).
    Returns the model and its tokenizer.
    """
    def build() -> tuple[nn.Module, Any]:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        config = AutoConfig.from_pretrained(path)
        has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        if not has_head:
            if task == "classification":
                config.num_labels = max(2, int(max(labels)) + 1) if labels else 2
            else:
                config.num_labels = 1
        tok = AutoTokenizer.from_pretrained(path)
        return AutoModelForSequenceClassification.from_pretrained(path, config=config, use_safetensors=True), tok

    return _loaded(path, build)


def load_encoder(path: str) -> nn.Module:
    """A local checkpoint's encoder alone (any head left out), in eval mode on the CPU: what its features are.

    Loaded without transformers' thread pool (``HF_DEACTIVATE_ASYNC_LOAD``): the label control that reads it
    runs while ``defib run``'s training process exits, after Python has stopped starting new threads.
    """
    def build() -> nn.Module:
        from transformers import AutoModel

        was = os.environ.get(SYNC_LOAD_ENV)
        os.environ[SYNC_LOAD_ENV] = "1"
        try:
            return AutoModel.from_pretrained(path, use_safetensors=True).eval()
        finally:
            if was is None:
                del os.environ[SYNC_LOAD_ENV]
            else:
                os.environ[SYNC_LOAD_ENV] = was

    return _loaded(path, build)


def _loaded(path: str, build: Callable[[], T]) -> T:
    """``build()`` on a folder that passed the weight-format and file checks; a failure as a ProbeInputError."""
    why = weights.refusal(path)
    if why:
        raise ProbeInputError(why)
    check_model_files(path)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        return build()
    except Exception as exc:  # noqa: BLE001 - a user's folder can fail in any way transformers or tokenizers has
        raise ProbeInputError(f"cannot load a model from {path}: {type(exc).__name__}: {first_line(exc)}") from None
