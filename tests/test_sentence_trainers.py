"""sentence-transformers' own trainers watched three ways: ``defib.watch()``, ``DefibCallback``, ``defib run``.

``SentenceTransformerTrainer`` and ``CrossEncoderTrainer`` are transformers ``Trainer`` subclasses that
call the loss module themselves (``loss(features, labels)``) on batches their own collator builds
from a ``datasets.Dataset``. The script (tests/scripts/tiny_sentence.py) is what a user writes; the
same function runs in-process here and unchanged as a subprocess under ``defib run``. Healthy:
CosineSimilarityLoss on labels in [0, 1], the CrossEncoder's BCE on 0/1 labels. Planted: STS-B's raw
0-5 scores into CosineSimilarityLoss, which M003 names at the loss's construction line.
"""

from __future__ import annotations

import sys

import pytest
from rules.helpers import planted_line, watch
from support import SCRIPTS

pytest.importorskip("sentence_transformers")
pytest.importorskip("datasets")
sys.path.insert(0, str(SCRIPTS))
import tiny_sentence  # noqa: E402

from defib.integrations.hf import DefibCallback  # noqa: E402

STEPS = 60  # past the flatline rule's grace period (30 steps) and its plateau window (20)
SHORT = 35  # the 0-5 labels: M003 reads the range from the first batches, the flatline needs only the grace period


def _codes(findings) -> list:
    return [(f["code"], f["message"]) if isinstance(f, dict) else (f.code, f.message) for f in findings]


def _assert_healthy_bi(d, s):
    assert d.steps == STEPS and s.loss.fn == "mse_loss" and s.model.name == "SentenceTransformer"
    assert s.loss.bounded_input == ("cosine similarity", -1.0, 1.0) and s.model.embedding_cosine.last < 0.9
    assert d.verdict == "healthy" and not d.findings, _codes(d.findings)


def _assert_range_first(findings, where_line: int | None):
    """M003 ranked first, on the cosine's range against 0-5 labels; at the loss's line when it was built watched."""
    f = findings[0]
    code, evidence, where = ((f["code"], f["evidence"], f["where"]) if isinstance(f, dict)
                             else (f.code, f.evidence, f.where and {"file": f.where.file, "line": f.where.line}))
    assert code == "M003", _codes(findings)
    assert evidence["activation"] == "cosine similarity" and evidence["target_range"][1] == 5.0
    if where_line is not None:
        assert where is not None and where["file"].endswith("tiny_sentence.py") and where["line"] == where_line, where


LOSS_LINE = planted_line(tiny_sentence.trainer)[1]


# (labels' scale, steps): unit labels train past the flatline rule's window; 0-5 labels need fewer steps
LABELS = pytest.mark.parametrize("scale, steps", [(1.0, STEPS), (5.0, SHORT)], ids=["unit-labels", "0-5-labels"])


@LABELS
def test_sentence_transformer_trainer_under_watch(tiny_model_dir, tmp_path, scale, steps):
    with watch() as w:
        tiny_sentence.trainer(str(tiny_model_dir), str(tmp_path), scale=scale, steps=steps).train()
    d, s = w.diagnosis, w.watcher.s
    if scale == 1.0:
        _assert_healthy_bi(d, s)
    else:
        _assert_range_first(d.findings, LOSS_LINE)


@LABELS
def test_sentence_transformer_trainer_with_the_callback(tiny_model_dir, tmp_path, scale, steps):
    cb = DefibCallback(report=False)
    tiny_sentence.trainer(str(tiny_model_dir), str(tmp_path), scale=scale, steps=steps, callbacks=[cb]).train()
    d = cb.diagnosis
    assert d.steps == steps and cb.watcher is None  # hooks removed at train end
    if scale == 1.0:
        assert d.verdict == "healthy" and not d.findings, _codes(d.findings)
    else:
        # the loss was built before the callback started watching: the finding points at a line of the user's,
        # trainer.train() here, or the loss's line when an earlier watch in this process saw the loss built
        _assert_range_first(d.findings, None)
        assert d.findings[0].where.file.endswith(("test_sentence_trainers.py", "tiny_sentence.py"))


@LABELS
def test_sentence_transformer_trainer_under_defib_run(tiny_model_dir, defib_run, scale, steps):
    r = defib_run(command=[sys.executable, str(SCRIPTS / "tiny_sentence.py"), "--model", str(tiny_model_dir),
                           "--scale", str(scale), "--steps", str(steps)])
    rep = r.report
    assert rep is not None and rep["script_exit"] == 0 and rep["steps_observed"] == steps, r
    if scale == 1.0:
        assert r.returncode == 0 and rep["verdict"] == "healthy" and not rep["findings"], _codes(rep["findings"])
    else:
        assert r.returncode == 1, r
        _assert_range_first(rep["findings"], LOSS_LINE)


def test_cross_encoder_trainer_with_bce_is_healthy_under_watch(tiny_model_dir, tmp_path):
    with watch() as w:
        tiny_sentence.trainer(str(tiny_model_dir), str(tmp_path), kind="cross", steps=STEPS).train()
    d, s = w.diagnosis, w.watcher.s
    assert s.loss.fn == "binary_cross_entropy_with_logits" and s.model.name == "CrossEncoder"
    assert d.steps == STEPS and s.preds.n_seen == STEPS * 16
    assert d.verdict == "healthy" and not d.findings, _codes(d.findings)



def test_the_learning_rate_line_survives_the_trainers_own_arguments(tiny_model_dir, tmp_path):
    """SentenceTransformerTrainer builds default arguments of its own (to compare with the user's for the model
    card): the lr line defib keeps is still the user's ``learning_rate=``, not the trainer's construction."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.modules import Pooling

    with watch() as w:
        encoder = Transformer(str(tiny_model_dir), max_seq_length=32)
        model = SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), "mean")], device="cpu")
        args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), max_steps=2, report_to=[],
                                                    learning_rate=3e-5,  # the user's line
                                                    save_strategy="no", use_cpu=True)
        SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(tiny_sentence.pairs(32, 1.0)),
                                   loss=losses.CosineSimilarityLoss(model))
    where = w.watcher.optim.training_args_where
    assert where is not None and "learning_rate=3e-5" in where.code, where
