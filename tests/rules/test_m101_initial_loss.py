"""M101: planted: a head drawn at std 1 on a 32-wide input (outputs in the tens); near-miss: the default init."""

from __future__ import annotations

import torch
from helpers import BertRegressor, find
from probing import probe

from defib.rules.model.m101_initial_loss import InitialLossTooHigh
from defib.signals.run import Signals
from defib.signals.probe import InitialLoss, ProbeSignals


def test_huge_head_fires(tiny_model_dir):
    model = BertRegressor(tiny_model_dir)
    torch.nn.init.normal_(model.head.weight, std=10.0)
    sig, d = probe(model, tiny_model_dir, only=("initial",))
    f = find(d, "M101")
    assert f is not None and f.cause == "model.bad_head_init", d.findings
    assert f.evidence["initial_loss"] > 3 * f.evidence["reference"]


def test_default_head_is_silent(tiny_model_dir):
    sig, d = probe(BertRegressor(tiny_model_dir), tiny_model_dir, only=("initial",))
    assert sig.initial.loss < 2 * sig.initial.reference
    assert find(d, "M101") is None


def test_nonfinite_initial_loss_fires():
    s = Signals(probe=ProbeSignals(task="classification", rows=8, source="t",
                                   initial=InitialLoss(loss=float("nan"), reference=0.69, baseline=0.69, n_classes=2,
                                                       output_absmax=float("nan"))))
    assert InitialLossTooHigh().check(s) is not None
