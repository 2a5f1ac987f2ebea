"""Evidence from sentence-transformers training: the loss module's scores and labels, the model call inside it.

A sentence-transformers loss is an ``nn.Module`` called as ``loss(sentence_features, labels)``; it
runs the model on each column itself and compares a similarity of the embeddings with the labels.
So the outermost module call the forward hooks see is the loss, whose inputs are lists of feature
dicts, and the model is called one level down. The patches in
:mod:`defib.evidence.hooks.st_patches` report three events here:

* the model called inside a loss: it is the training forward's model call (the batch, the mask, the
  model itself), and on sampled steps its sentence embeddings show whether every text points the
  same way (mean cosine between different inputs), and what the pooled vector is made of, as a
  head's input is measured;
* the loss's embeddings and labels (``compute_loss_from_embeddings``): when a torch loss inside the
  module compared the scores with the labels (``CosineSimilarityLoss``'s ``nn.MSELoss``, a
  ``CrossEncoder``'s ``BCEWithLogitsLoss``), that call has the predictions, and this part only adds
  the range the scores can reach; a loss that computes its own arithmetic (CoSENT, AnglE, in-batch
  negatives) is read here as the similarity scores against the labels, with the loss a constant
  score gives on the same batch as the baseline;
* the loss's construction: the user's line, where a finding about the loss points.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from defib.evidence.callsite import is_user_file, make_where, user_frame, where_here
from defib.evidence.layer_origin import layer_where
from defib.evidence.watch.columns import label_where, note_columns
from defib.evidence.watch.data import find_inputs
from defib.evidence.watch.guard import Part, guarded

# What a loss does with the labels, by the name of a class it derives from (subclasses such as AnglELoss
# inherit their base's way). "order": only the labels' order counts (CoSENT's pairwise ranking); "in_batch":
# no labels, each anchor's own positive against the batch's other texts. A loss not named here is read
# only through the torch loss it calls, if it calls one.
LABEL_USE = {"CoSENTLoss": "order", "MultipleNegativesRankingLoss": "in_batch",
             "MultipleNegativesSymmetricRankingLoss": "in_batch"}
MAX_ROWS = 256  # embeddings compared pairwise on a sampled step (the first rows of a larger batch)


class SentenceEvidence(Part):
    """The sentence-transformers loss calls in progress and what they compare."""

    def __init__(self, watcher: Any):
        super().__init__(watcher)
        self.depth = 0  # sentence-transformers loss calls in progress (a loss may wrap another)
        self._example_lines: set[tuple[str, int]] = set()  # the user's lines that built InputExamples
        self.paired = False  # a training loss compared the embeddings of two or more columns
        self._last_encoded: tuple | None = None  # (model id, texts' count, their hash) of the last encode() after training

    def enter(self) -> int:
        """A loss module's forward begins; the number of hooked loss calls so far, to tell whether it makes one."""
        self.depth += 1
        ls = self.w.s.loss
        return ls.calls if ls is not None and ls.source == "call" else 0

    def leave(self) -> None:
        self.depth -= 1

    @guarded
    def loss_built(self, loss: nn.Module) -> None:
        """``CoSENTLoss(model)``: the user's line, for findings about the loss."""
        if getattr(loss, "_defib_where", None) is None:
            loss._defib_where = where_here(skip=3)
        # CosineSimilarityLoss's ``loss_fct=nn.MSELoss()`` is a default argument, built when the library was
        # imported: its own line is the user's import line, so a finding about it points at this loss instead
        defaults = [p.default for p in inspect.signature(type(loss).__init__).parameters.values()]
        for sub in loss.children():
            if isinstance(sub, nn.modules.loss._Loss) and any(sub is d for d in defaults):
                sub._defib_where = loss._defib_where

    @guarded
    def example_built(self, example: Any) -> None:
        """``InputExample(texts=..., label=s)``: the user's line that led to it (two lines are already too many)."""
        frame = user_frame(2) if len(self._example_lines) < 2 else None
        if frame is not None:
            self._example_lines.add((frame.f_code.co_filename, frame.f_lineno))

    @guarded
    def dataset_made(self, ds: Any) -> None:
        """A ``datasets.Dataset`` was made: the user's lines behind its columns (see :mod:`.columns`)."""
        note_columns(ds, sys._getframe(1))

    def examples_where(self) -> Any:
        """The line that built the labels: the one line that built the InputExamples, if one (train and dev built
        apart: unknown); without InputExamples, the line that made the labels column of the training dataset."""
        if not self._example_lines:
            return label_where(self.w.data.training_dataset())
        if len(self._example_lines) != 1:
            return None
        return make_where(*next(iter(self._example_lines)))

    @guarded
    def model_called(self, model: nn.Module, features: Any, output: Any) -> None:
        """The model ran inside a loss module: the training forward's model call."""
        ids, mask = find_inputs((features,), {})
        if ids is None:
            return
        self.w._root_call(model, (features,), {})
        if self.w._grad and model.training and self.w.rows.wanted():
            # sentence-transformers calls the encoder's forward itself, past its hooks: its batch is this one
            self.w.rows.encoder_call(model, (features,), {}, ids, mask)
        emb = output.get("sentence_embedding") if isinstance(output, Mapping) else None
        if not (self.w._grad and model.training and self.w.sampling() and isinstance(emb, torch.Tensor)
                and emb.ndim == 2 and emb.shape[0] == ids.shape[0] > 1):
            return
        self.w.model.pooled_vectors(emb)
        m = self.w.s.model
        if m is not None and m.head_input_where is None:
            m.head_input_where = _pooling_where(model)
            m.pool_layer_where = layer_where(m.head_input_where)
        self.w.later(self._embedding_cosine, self.w.s.step, _mean_cosine(emb[:MAX_ROWS], ids[:MAX_ROWS]))

    def _embedding_cosine(self, step: int, value: torch.Tensor) -> None:
        v = float(value)
        if math.isfinite(v):
            self.w.s.model.embedding_cosine.add(step, v)

    @guarded
    def loss_computed(self, loss: nn.Module, embeddings: Any, labels: Any, result: Any, calls_before: int) -> None:
        """``compute_loss_from_embeddings(embeddings, labels)`` returned ``result`` (the outermost loss only)."""
        if not (self.w._grad and torch.is_tensor(result) and result.numel() == 1 and result.requires_grad):
            return
        ls = self.w.s.loss
        if ls is not None and ls.source == "call" and ls.calls > calls_before:
            self._hooked_call_inside(loss, ls)
            return
        use = next((LABEL_USE[k.__name__] for k in type(loss).__mro__ if k.__name__ in LABEL_USE), None)
        if not isinstance(embeddings, (list, tuple)) or len(embeddings) < 2:
            return
        self.paired = True
        if use is None:
            return
        a, b = embeddings[0].detach(), embeddings[1].detach()
        where = where_here(skip=3)
        if use == "order":
            if not torch.is_tensor(labels) or labels.numel() != a.shape[0]:
                return
            scores = loss.similarity_fct(a, b).float()
            y = labels.detach().reshape(-1).float()
            self.w.rows.loss_targets("regression", False, scores, y)  # the pairs, for the label control
            # CoSENT uses only the labels' order: on the scores' scale (each batch over its largest label),
            # the spread of predictions against targets means what it means for a cosine loss
            target = y / y.abs().max().clamp_min(1e-12)
            # equal scores: exp(0) for every pair the labels order, plus CoSENT's own 1
            baseline = torch.log1p((y[:, None] > y[None, :]).sum().float())
        else:
            scores = F.cosine_similarity(a, b).float()
            target = None
            baseline = math.log(a.shape[0] * (len(embeddings) - 1))  # one candidate of that many, uniformly
        self.w.loss.library_loss(type(loss).__name__, scores, target, result, baseline, where)
        if self.w.s.loss is not None and self.w.s.loss.module_where is None:
            self.w.s.loss.module_where = getattr(loss, "_defib_where", None)

    @guarded
    def encoded(self, model: nn.Module, sentences: Any, variant: tuple) -> None:
        """``model.encode(sentences)`` returned, outside any loss: two calls in a row on the same texts (with the
        same prompt: a query and a document prompt make two different encodings) after training on pairs are the
        two sides of the evaluation's pairs taken from one column."""
        if self.depth or self.w.s.step == 0 or not self.paired or not isinstance(sentences, (list, tuple)) \
                or not all(isinstance(t, str) for t in sentences) or len(set(sentences)) < 2:
            self._last_encoded = None
            return
        key = (id(model), variant, len(sentences), hash(tuple(sentences)))
        m = self.w.s.model
        if key == self._last_encoded and m is not None and m.eval_same_texts is None:
            m.eval_same_texts = len(sentences)
            m.eval_same_texts_where = where_here(skip=3)
        self._last_encoded = key

    def _hooked_call_inside(self, loss: nn.Module, ls: Any) -> None:
        """A torch loss inside the module compared its scores with the labels: say what those scores can reach."""
        if ls.module_where is None:
            ls.module_where = getattr(loss, "_defib_where", None)
        if ls.bounded_input is None and isinstance(getattr(loss, "cos_score_transformation", None), nn.Identity):
            ls.bounded_input = ("cosine similarity", -1.0, 1.0)


def _pooling_where(model: nn.Module) -> Any:
    """The line of the user's own module that writes the model's ``sentence_embedding`` (a custom pooling), if any.

    The library's ``Pooling`` finds each row's real tokens from the attention mask; a module of the user's,
    placed after the encoder, is where a sentence vector gets read from the wrong place."""
    for module in reversed(list(model.children())):
        try:
            file = inspect.getsourcefile(type(module).forward)
            lines, start = inspect.getsourcelines(type(module).forward)
        except (OSError, TypeError):
            continue
        if file is None or not is_user_file(file):
            continue
        hits = [start + i for i, line in enumerate(lines) if "sentence_embedding" in line]
        if hits:
            return make_where(file, hits[-1])
    return None


def _mean_cosine(emb: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean cosine between the embeddings of rows whose inputs differ (a 0-d tensor, on the device)."""
    x = F.normalize(emb.float(), dim=-1)
    cos = x @ x.T  # (B, B)
    same = (ids[:, None, :] == ids[None, :, :]).all(-1)  # identical inputs have cosine 1 whatever the model
    differ = ~same
    return (cos * differ).sum() / differ.sum().clamp_min(1)
