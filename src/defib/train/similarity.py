"""``defib train --task similarity``: a bi-encoder (sentence-transformers) learning a score per sentence pair.

Each text is embedded alone and a pair's score is the cosine of the two
embeddings, so a collection is embedded once and then searched; a
cross-encoder (``--task regression --text-pair``) reads both texts together,
one forward pass per pair. Training is sentence-transformers' own
``SentenceTransformerTrainer`` with the recipe's arguments
(:func:`~defib.train.pipeline.recipe_args`), defib's callback and early
stopping on the dev Spearman of the cosine (what its
``EmbeddingSimilarityEvaluator`` and the SBERT papers rank STS models by).

The default loss is CoSENT (``--loss cosent``), not CosineSimilarityLoss
(``--loss cosine``): CoSENT ranks every pair's cosine in the batch against
every other's by the order of their scores, which is what Spearman
measures; MSE on the cosine asks each cosine to equal its scaled score, a
calibration a ranking never uses, and sentence-transformers documents it as
the weaker training signal. Both get the scores scaled from their observed
range onto [0, 1] (:class:`~defib.train.labels.LabelSpace`): the cosine loss
needs that (0-5 scores are beyond any cosine: defib's M003), CoSENT reads
only their order and is unchanged by it. ``defib predict`` gives the cosine.

sentence-transformers and datasets are optional: ``pip install 'defib[similarity]'``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from defib.evidence.readers import InputError, first_line
from defib.train.data import Columns
from defib.train.pipeline import (Prepared, TrainOptions, TrainResult, quiet_transformers, recipe_args, run_trainer,
                                  watched_callbacks)

INSTALL = "pip install 'defib[similarity]'"
DEV = "dev"  # the evaluator's name: its metrics are dev_pearson_cosine, dev_spearman_cosine


def require(opts: TrainOptions) -> None:
    """Raise :class:`InputError` when ``--task similarity`` cannot run: no pair column, or the extra not installed."""
    if not opts.text_pair:
        raise InputError("--task similarity: a bi-encoder learns from sentence pairs; name the second text's column "
                         "with --text-pair")
    try:
        import datasets  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError as exc:
        raise InputError(f"--task similarity needs sentence-transformers and datasets ({exc.name or exc} is not "
                         f"installed): {INSTALL}") from None


def train_bi_encoder(opts: TrainOptions, prep: Prepared) -> TrainResult:
    """Fine-tune ``prep.model`` as a SentenceTransformer (a plain encoder folder gets mean pooling) into ``opts.out``."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    started = time.time()
    torch.manual_seed(opts.seed)  # any new module's initialisation (a Dense layer; pooling has no weights)
    model = SentenceTransformer(prep.model, local_files_only=True)
    model.max_seq_length = opts.max_length
    model.model_card_data.set_widget_examples = lambda dataset: None  # the hub widget's: a progress bar, nothing more
    train_ds = Dataset.from_dict({"sentence1": prep.train.texts, "sentence2": prep.train.pairs,
                                  "score": np.asarray(prep.y_train, dtype=np.float64).tolist()})
    loss = losses.CoSENTLoss(model) if prep.loss == "cosent" else losses.CosineSimilarityLoss(model)
    dev = EmbeddingSimilarityEvaluator(prep.dev.texts, prep.dev.pairs, np.asarray(prep.y_dev).tolist(),
                                       batch_size=opts.batch_size * 2, similarity_fn_names=["cosine"], name=DEV,
                                       write_csv=False)
    # sentence-transformers draws its own batches (its batch sampler): no length grouping
    args, steps_per_epoch = recipe_args(opts, len(train_ds), f"{DEV}_spearman_cosine",
                                        SentenceTransformerTrainingArguments, grouped=False)
    callbacks = watched_callbacks(opts)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_ds, loss=loss, evaluator=dev,
                                         callbacks=callbacks)
    # a sentence-transformers checkpoint is often trained for similarity already (the packaged MiniLM scores 0.87
    # Spearman on STS-B dev as it is): fine-tuning must be judged against the model as loaded, not against zero
    before = _dev_metrics(dev(model))
    result = run_trainer(trainer, callbacks[0], opts, prep, steps_per_epoch, started, _dev_metrics)
    result.metrics.update({f"{k}_before_training": v for k, v in before.items()})  # summary.worse_than_loaded
    return result


def _dev_metrics(final: dict[str, float]) -> dict[str, float]:
    return {"pearson": final[f"{DEV}_pearson_cosine"], "spearman": final[f"{DEV}_spearman_cosine"]}


def load_bi_encoder(folder: Path, max_length: int) -> Any:
    """The SentenceTransformer that ``defib train --task similarity`` saved, or an :class:`InputError`."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise InputError(f"{folder}: a sentence-transformers bi-encoder; loading it needs {INSTALL}") from None
    try:
        with quiet_transformers():
            model = SentenceTransformer(str(folder), local_files_only=True, device="cpu")
    except Exception as exc:  # noqa: BLE001 - a user's folder can fail in any way sentence-transformers has
        raise InputError(f"{folder}: cannot load the model ({type(exc).__name__}: {first_line(exc)})") from None
    model.max_seq_length = max_length
    model.eval()
    return model


def cosines(model: Any, col: Columns, batch_size: int) -> tuple[np.ndarray, list[list[int]], list[int]]:
    """Each pair's cosine (N, 1); per row both texts' token ids, one after the other, and the longer one's length."""
    import torch

    pairs = col.pairs or []
    with torch.no_grad():
        a = model.encode(col.texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
        b = model.encode(pairs, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    cos = (a * b).sum(-1).float().cpu().numpy().reshape(-1, 1)
    tok, max_length = model.tokenizer, model.max_seq_length
    ids_a = tok(col.texts, truncation=True, max_length=max_length)["input_ids"]
    ids_b = tok(pairs, truncation=True, max_length=max_length)["input_ids"]
    return cos, [x + y for x, y in zip(ids_a, ids_b)], [max(len(x), len(y)) for x, y in zip(ids_a, ids_b)]
