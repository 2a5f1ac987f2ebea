"""E002: distinct inputs identical after tokenization (defib predict).

Planted: reviews behind a shared 12-word disclaimer, predicted with
max_length 12, so everything that tells them apart is cut. Near-miss: the
same rows with room for the review (max_length 64).
"""

from __future__ import annotations

from helpers import find, sentences
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from defib.rules.base import Severity
from defib.train.data import Columns
from defib.train.labels import LabelSpace
from defib.train.predict import Loaded, predict

PREFIX = "disclaimer this review reflects the opinion of one reader and not of the site"


def _predict(model_dir, max_length: int):
    space = LabelSpace("regression")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1).eval()
    loaded = Loaded(model, AutoTokenizer.from_pretrained(model_dir), space, {"text": "text"}, max_length=max_length)
    texts = [f"{PREFIX} {t}" for t, _ in sentences(64)]
    return predict(loaded, Columns(None, texts, None, None))


def test_truncated_shared_prefix_fires(tiny_model_dir):
    r = _predict(tiny_model_dir, max_length=12)  # planted: the prefix alone fills the 12 tokens
    f = find(r.diagnosis, "E002")
    assert f is not None, r.diagnosis.findings
    assert f.cause == "eval.inputs" and f.severity == Severity.WARNING
    assert f.evidence["distinct_encodings"] == 1 and f.evidence["distinct_texts"] > 50
    assert f.evidence["rows_at_max_length"] == 64
    # predictions of rows, not a run without steps: the finding makes them at risk, and the report says what ran
    assert r.diagnosis.verdict == "at_risk"
    assert r.diagnosis.to_dict()["predict"]["distinct_encodings"] == 1


def test_room_for_the_text_is_silent(tiny_model_dir):
    r = _predict(tiny_model_dir, max_length=64)
    assert r.signals.distinct_encodings == r.signals.distinct_texts
    assert find(r.diagnosis, "E002") is None, r.diagnosis.findings
    assert r.diagnosis.verdict == "healthy", r.diagnosis.findings
