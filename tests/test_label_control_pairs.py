"""D010 on a bi-encoder: its training pairs kept with their labels and the run's own scores, and the label
control run on pair features when those scores did not follow the labels, with no flatline needed.

A tiny SentenceTransformer (the tiny BERT + mean pooling) on word-overlap pairs (the label is the share of
words the second text keeps from the first, test_sentence_transformers.py's rows). Planted: the labels
shuffled apart from their pairs, under CoSENT (the library's own loss) and under a plain loop's
``mse_loss(cos(u, v), y)``. Near-misses: the same pairs with their own labels (the run's scores follow them:
no control, no finding), and the control run on those aligned pairs anyway (the labels are predicted).
"""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
import torch.nn.functional as F
from rules.helpers import find, watch

pytest.importorskip("sentence_transformers")
from sentence_transformers.sentence_transformer import losses  # noqa: E402
from test_sentence_transformers import BATCH, bi_encoder, pairs, train  # noqa: E402

from defib.diagnosis import diagnose  # noqa: E402
from defib.evidence.probes.label_control import run_label_control  # noqa: E402
from defib.evidence.watch.rows import MAX_ROWS  # noqa: E402

STEPS = 20  # 320 pairs seen, the first 256 kept; short of the flatline rule's grace period (30 steps)
ALIGNED = pairs(STEPS * BATCH, seed=3)


def shuffled(rows: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    labels = [r[2] for r in rows]
    random.Random(0).shuffle(labels)
    return [(a, b, y) for (a, b, _), y in zip(rows, labels)]


@pytest.fixture(autouse=True)
def control_on(monkeypatch):
    """The control on (its default), whatever the environment of the test session says."""
    monkeypatch.delenv("DEFIB_LABEL_CONTROL", raising=False)


def test_shuffled_pair_labels_under_cosent_fire_without_a_flatline(tiny_model_dir):
    model = bi_encoder(tiny_model_dir)
    with watch() as w:
        train(model, losses.CoSENTLoss(model), shuffled(ALIGNED), steps=STEPS)
    d, rows = w.diagnosis, w.watcher.rows
    assert rows.task == "pairs" and len(rows.rows) == MAX_ROWS
    assert all(r.second is not None and r.score is not None for r in rows.rows)
    lc = w.watcher.s.label_control
    assert lc is not None and lc.skipped is None and lc.pairs and lc.trigger == "pair_scores", lc
    assert lc.scores_p > 0.01
    f = find(d, "D010")
    assert f is not None and f.cause == "data.label_misalignment", (lc.labels, lc.power)
    assert f.evidence["p_value"] > 0.05 and f.evidence["token_label_p_value"] <= 0.01
    assert "did not follow their labels" in f.message and "word pieces the two texts share" in f.message
    assert d.verdict == "at_risk" and d.findings[0].code == "D010", [(g.code, g.message) for g in d.findings]


def test_aligned_pair_labels_are_followed_by_the_runs_scores_and_the_control_agrees(tiny_model_dir):
    model = bi_encoder(tiny_model_dir)
    with watch() as w:
        train(model, losses.CoSENTLoss(model), ALIGNED, steps=STEPS)
    rows, s = w.watcher.rows, w.watcher.s
    rho, p = rows.scores_follow_labels()
    assert rho > 0.1 and p <= 0.01  # the tiny model's mean-pooled cosine reads word overlap, faintly
    assert s.label_control is None and find(w.diagnosis, "D010") is None  # nothing to check, nothing paid
    # the control itself on the same pairs: their labels are predicted, so it would stay silent too
    s.label_control = run_label_control(rows.rows, "pairs", str(tiny_model_dir), 1000, trigger="pair_scores")
    assert s.label_control.skipped is None and s.label_control.labels.p_value <= 0.01, s.label_control.labels
    assert find(diagnose(s), "D010") is None


def test_a_plain_bi_encoder_loop_on_shuffled_labels_fires(tiny_model_dir):
    """Two encoder calls (one per text of a pair) and one regression loss on their cosine: kept as pairs."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(str(tiny_model_dir))
    opt = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    rows = shuffled(ALIGNED)

    def embed(texts: list[str]) -> torch.Tensor:
        enc = tok(texts, padding=True, return_tensors="pt")
        hidden = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1)

    with watch(encoder, opt) as w:
        for step in range(STEPS):
            batch = rows[step * BATCH:(step + 1) * BATCH]
            cos = F.cosine_similarity(embed([r[0] for r in batch]), embed([r[1] for r in batch]))
            loss = F.mse_loss(cos, torch.tensor([r[2] for r in batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    kept = w.watcher.rows.rows
    assert len(kept) == MAX_ROWS and w.watcher.rows.task == "pairs"
    first = kept[0]
    assert tok.decode(first.input_ids[1:-1]) == rows[0][0] and tok.decode(first.second.input_ids[1:-1]) == rows[0][1]
    assert first.target == pytest.approx(rows[0][2])
    f = find(w.diagnosis, "D010")
    lc = w.watcher.s.label_control
    assert f is not None, (lc, [(g.code, g.message) for g in w.diagnosis.findings])
    assert w.diagnosis.verdict in ("at_risk", "flatlined")
    # the same pairs with their own labels: predicted by the read-out
    own = {(a, b): y for a, b, y in ALIGNED}
    aligned = [dataclasses.replace(r, target=own[(tok.decode(r.input_ids[1:-1]), tok.decode(r.second.input_ids[1:-1]))])
               for r in kept]
    control = run_label_control(aligned, "pairs", str(tiny_model_dir), 1000)
    assert control.labels.p_value <= 0.01 and control.power.p_value <= 0.01


def test_the_scores_agreement_is_a_one_sided_rank_test():
    from defib.evidence.watch.rows import Row, RowSample

    def sample(scores: list[float], labels: list[float]) -> RowSample:
        kept = RowSample(None)
        kept.task = "pairs"
        ids = torch.tensor([101, 2000, 102])
        kept.rows = [Row(ids, None, None, y, second=Row(ids, None, None, y), score=x) for x, y in zip(scores, labels)]
        return kept

    gen = torch.Generator().manual_seed(0)
    labels = torch.rand(256, generator=gen).tolist()
    noise = torch.randn(256, generator=gen).tolist()
    rho, p = sample([y + 0.3 * e for y, e in zip(labels, noise)], labels).scores_follow_labels()
    assert rho > 0.5 and p < 1e-6
    rho, p = sample([-y for y in labels], labels).scores_follow_labels()
    assert rho == pytest.approx(-1.0) and p > 0.99  # scores that reverse the labels do not follow them
    assert sample(noise, [0.5] * 256).scores_follow_labels() is None  # one label for all: nothing to follow
