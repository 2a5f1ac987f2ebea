"""A checkpoint folder loaded as a sequence classifier: what ``defib probe`` probes and what a run's label control trains.

One loader for both, so that the model a run's label-permutation control
(:mod:`defib.evidence.probes.label_control`) trains is built exactly as the
one ``defib probe --model DIR`` would probe.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from defib.evidence import weights
from defib.evidence.model_files import check_model_files
from defib.evidence.probes.data import ProbeInputError
from defib.evidence.readers import first_line


def load_classifier(path: str, task: str | None, labels: list | None, *,
                    tokenizer: bool = True) -> tuple[nn.Module, Any]:
    """A local checkpoint as a sequence classifier; a bare encoder gets a fresh head sized for the labels.

    ``task`` is the one given or inferred from the labels (None without data: a regression head).
    Returns the model and its tokenizer (None when ``tokenizer`` is False: the caller has token ids).
    """
    why = weights.refusal(path)
    if why:
        raise ProbeInputError(why)
    check_model_files(path)
    try:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        config = AutoConfig.from_pretrained(path)
        has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        if not has_head:
            if task == "classification":
                config.num_labels = max(2, int(max(labels)) + 1) if labels else 2
            else:
                config.num_labels = 1
        tok = AutoTokenizer.from_pretrained(path) if tokenizer else None
        net = AutoModelForSequenceClassification.from_pretrained(path, config=config, use_safetensors=True)
    except Exception as exc:  # noqa: BLE001 - a user's folder can fail in any way transformers or tokenizers has
        raise ProbeInputError(f"cannot load a model from {path}: {type(exc).__name__}: {first_line(exc)}") from None
    return net, tok
