"""E001: one class predicted for nearly every row while the logits vary (defib predict).

Planted: a botched prior correction, +20 on one class's bias, so the argmax
never changes. Near-miss: the same head without it.
"""

from __future__ import annotations

import torch
from helpers import find, sentences
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from defib.rules.base import Severity
from defib.train.data import Columns
from defib.train.labels import LabelSpace
from defib.train.predict import Loaded, predict


def _predict(model_dir, bias_boost: float):
    """The tiny BERT with a head rescaled so its centred logits vary by 1 and each class wins on some rows."""
    torch.manual_seed(0)
    space = LabelSpace("classification", names=["neg", "pos", "mixed"])
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3).eval()
    loaded = Loaded(model, AutoTokenizer.from_pretrained(model_dir), space, {"text": "text"}, max_length=32)
    rows = Columns(None, [t for t, _ in sentences(64)], None, None)
    first = predict(loaded, rows)
    scale = 1.0 / first.signals.output_spread
    with torch.no_grad():
        head = model.classifier
        head.weight.mul_(scale)
        head.bias.mul_(scale)
        head.bias.sub_(torch.tensor(first.outputs.mean(0) * scale))  # a head that has learned to separate the rows
        head.bias[0] += bias_boost
    return predict(loaded, rows)


def test_bias_that_swamps_the_logits_fires(tiny_model_dir):
    r = _predict(tiny_model_dir, bias_boost=20.0)  # planted
    f = find(r.diagnosis, "E001")
    assert f is not None, (r.signals, r.diagnosis.findings)
    assert f.cause == "eval.decoding" and f.severity == Severity.WARNING
    assert f.evidence["top_class"] == "neg" and f.evidence["top_class_share"] == 1.0


def test_plain_head_is_silent(tiny_model_dir):
    r = _predict(tiny_model_dir, bias_boost=0.0)
    assert r.signals.output_spread >= 0.3  # the same logits' spread as above: only the bias differs
    assert r.signals.top_class_share < 0.95
    assert find(r.diagnosis, "E001") is None, r.diagnosis.findings
