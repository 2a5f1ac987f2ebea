"""D006 on sentence-transformers' trainer: the constant labels column points at the line that made it.

The trainer reads the labels from the ``label``/``score`` column of the ``datasets.Dataset`` it is given
and compares them inside the library, so the finding points at the user's line that gave that column
its values: a ``Dataset.from_dict`` entry, an ``add_column``, a ``map`` that rewrote it. Near-miss for
the line: a later ``map`` that adds another column, and a ``shuffle``, leave the labels' line where it was.
"""

from __future__ import annotations

import pytest
from helpers import assert_where, find, planted_line, sentences, watch

from defib.evidence.watch.columns import label_where

datasets = pytest.importorskip("datasets")
pytest.importorskip("sentence_transformers")
Dataset = datasets.Dataset


def _texts(n: int = 64) -> tuple[list[str], list[str]]:
    rows = sentences(2 * n, seed=9)
    return [t for t, _ in rows[:n]], [t for t, _ in rows[n:]]


def from_dict(a: list[str], b: list[str]):
    return Dataset.from_dict({"sentence1": a, "sentence2": b,
                              "label": [1.0] * len(a)})  # planted


def added_column(a: list[str], b: list[str]):
    ds = Dataset.from_dict({"sentence1": a, "sentence2": b})
    return ds.add_column("score", [1.0] * len(a))  # planted


def rewritten_by_map(a: list[str], b: list[str]):
    ds = Dataset.from_dict({"sentence1": a, "sentence2": b, "score": [0.5] * len(a)})
    return ds.map(lambda row: {"score": 1.0})  # planted


def relabelled_by_function(a: list[str], b: list[str]):
    def relabel(row):
        row["score"] = 1.0
        return row
    # the file puts values under "score" in several places: the map that rewrote the column is the line
    return Dataset.from_dict({"sentence1": a, "sentence2": b, "score": [0.0] * len(a)}).map(relabel)  # planted


def kept_through_map_and_shuffle(a: list[str], b: list[str]):
    ds = Dataset.from_dict({"sentence1": a, "sentence2": b, "score": [1.0] * len(a)})  # planted
    ds = ds.map(lambda row: {"words": len(row["sentence1"].split())})
    return ds.shuffle(seed=0).select(range(len(a) - 4))


@pytest.mark.parametrize("build", [from_dict, added_column, rewritten_by_map, relabelled_by_function,
                                   kept_through_map_and_shuffle],
                         ids=lambda f: f.__name__)
def test_labels_column_points_at_the_line_that_made_it(build):
    with watch():
        ds = build(*_texts())
    where = label_where(ds)
    file, line = planted_line(build)
    assert where is not None and where.line == line and file.endswith(where.file.split("/")[-1]), where


def test_dataset_made_unwatched_or_from_columns_made_in_several_places_has_no_line():
    assert label_where(from_dict(*_texts())) is None
    a, b = _texts()
    cols = {"sentence1": a, "sentence2": b, "score": [0.0] * len(a)}
    cols["score"] = [1.0] * len(a)
    with watch():
        ds = Dataset.from_dict(cols)
    assert label_where(ds) is None  # "score" is set in several places of this file: no line is sure


def test_constant_labels_in_a_trainer_dataset_point_at_the_column(tiny_model_dir, tmp_path):
    """CosineSimilarityLoss on a Dataset whose label column is all 1.0: D006, at the column's line."""
    import torch
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.modules import Pooling

    torch.manual_seed(0)
    with watch() as w:
        encoder = Transformer(str(tiny_model_dir), max_seq_length=32)
        model = SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), "mean")],
                                    device="cpu")
        args = SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path), per_device_train_batch_size=16, max_steps=8, learning_rate=1e-3,
            report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=True, seed=0)
        SentenceTransformerTrainer(model=model, args=args, train_dataset=from_dict(*_texts(128)),
                                   loss=losses.CosineSimilarityLoss(model)).train()
    f = find(w.diagnosis, "D006")
    assert f is not None and f.cause == "data.constant_labels", w.diagnosis.findings
    assert_where(f, from_dict)
