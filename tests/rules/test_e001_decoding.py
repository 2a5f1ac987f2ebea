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
    torch.manual_seed(0)
    space = LabelSpace("classification", names=["neg", "pos", "mixed"])
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(4.0)  # a head that has learned to separate the rows (logits spread ~1)
        model.classifier.bias[0] += bias_boost
    loaded = Loaded(model, AutoTokenizer.from_pretrained(model_dir), space, {"text": "text"}, max_length=32)
    return predict(loaded, Columns(None, [t for t, _ in sentences(64)], None, None))



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
