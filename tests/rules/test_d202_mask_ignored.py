"""D202: planted: a forward that drops the mask, or takes none; near-miss: a model that passes the mask on."""

from __future__ import annotations

from helpers import BertRegressor, find
from probing import NoMask, NoMaskArg, probe


def test_dropped_mask_fires(tiny_model_dir):
    sig, d = probe(NoMask(tiny_model_dir), tiny_model_dir, only=("sensitivity",))
    f = find(d, "D202")
    assert f is not None and f.cause == "data.attention_mask", d.findings
    assert f.evidence["mask_effect"] == 0.0 and f.evidence["mask_rows_changed"] >= 2


def test_forward_without_mask_argument_fires(tiny_model_dir):
    sig, d = probe(NoMaskArg(tiny_model_dir), tiny_model_dir, only=("sensitivity",))
    f = find(d, "D202")
    assert f is not None and f.evidence["mask_accepted"] is False


def test_mask_passed_on_is_silent(tiny_model_dir):
    sig, d = probe(BertRegressor(tiny_model_dir), tiny_model_dir, only=("sensitivity",))
    assert sig.sensitivity.mask_effect > 0.01
    assert find(d, "D202") is None
