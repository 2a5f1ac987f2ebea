"""What defib wraps in sentence-transformers, once it is imported: its loss modules and its models' forward.

A sentence-transformers loss is called as ``loss(sentence_features, labels)`` and calls the model
itself, so the forward hooks' outermost call is the loss, not the model; and CoSENT, AnglE and the
in-batch-negatives losses compute their arithmetic by hand, on scores no hooked call receives. The
wrappers here report to :mod:`defib.evidence.watch.sentence`:

* every loss class of the package (bi-encoder and cross-encoder): its construction (the user's
  line), its ``forward`` (a model called inside is the training forward's model call), and its
  ``compute_loss_from_embeddings(embeddings, labels)`` (the embeddings and labels the loss
  compares), the outermost call only, since one loss may call another's;
* ``InputExample.__init__``: the user's line that gives examples their labels, the line a
  finding about the labels' scale points at (the loss compares them far from that line);
* ``BaseModel.forward``, shared by ``SentenceTransformer`` and ``CrossEncoder``: its features and
  output, when a loss called it;
* ``SentenceTransformer.encode``: the texts of an evaluation after training (two calls in a row on
  the same texts are the two sides of the dev pairs taken from one column).

Applied through :class:`~defib.evidence.hooks.patching.PostImport`, so a script that never imports
sentence-transformers never loads it because of defib. Each wrapper calls the original with the same
arguments and returns its result untouched.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from torch import nn

from defib.evidence.hooks.patching import Installed, after_init
from defib.evidence.watch import Watcher

EXAMPLES = "sentence_transformers.sentence_transformer.readers.input_example"
LOSS_PACKAGES = ("sentence_transformers.sentence_transformer.losses", "sentence_transformers.cross_encoder.losses")


def st_callbacks(inst: Installed, w: Watcher) -> dict[str, Callable[[Any], None]]:
    """The post-import callbacks that patch sentence-transformers' modules as they load."""
    callbacks = {name: functools.partial(_patch_losses, inst, w) for name in LOSS_PACKAGES}
    callbacks["sentence_transformers.base.model"] = functools.partial(_patch_model, inst, w)
    callbacks[EXAMPLES] = functools.partial(_patch_examples, inst, w)
    callbacks["sentence_transformers.sentence_transformer.model"] = functools.partial(_patch_encode, inst, w)
    return callbacks


def _patch_losses(inst: Installed, w: Watcher, package: Any) -> None:
    """Every loss class the package exports (its ``__init__`` imports them all)."""
    for cls in vars(package).values():
        if isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__.startswith(package.__name__):
            _patch_loss(inst, w, cls)


def _patch_loss(inst: Installed, w: Watcher, cls: type) -> None:
    own = vars(cls)
    if "__init__" in own:
        def init(original):
            @functools.wraps(original)
            def run(self, *args, **kwargs):
                original(self, *args, **kwargs)
                w.sentence.loss_built(self)
            return run
        inst.patch(cls, "__init__", init)
    if "forward" in own:
        def forward(original):
            @functools.wraps(original)
            def run(self, *args, **kwargs):
                w.sentence.enter()
                try:
                    return original(self, *args, **kwargs)
                finally:
                    w.sentence.leave()
            return run
        inst.patch(cls, "forward", forward)
    if "compute_loss_from_embeddings" in own:
        def compute(original):
            @functools.wraps(original)
            def run(self, embeddings, labels, *args, **kwargs):
                outermost = w.sentence.depth <= 1
                calls = w.sentence.enter()
                try:
                    out = original(self, embeddings, labels, *args, **kwargs)
                finally:
                    w.sentence.leave()
                if outermost:
                    w.sentence.loss_computed(self, embeddings, labels, out, calls)
                return out
            return run
        inst.patch(cls, "compute_loss_from_embeddings", compute)


def _patch_model(inst: Installed, w: Watcher, module: Any) -> None:
    cls = getattr(module, "BaseModel", None)
    if cls is None or "forward" not in vars(cls):
        return

    def forward(original):
        @functools.wraps(original)
        def run(self, input, *args, **kwargs):
            out = original(self, input, *args, **kwargs)
            if w.sentence.depth:
                w.sentence.model_called(self, input, out)
            return out
        return run

    inst.patch(cls, "forward", forward)


def _patch_encode(inst: Installed, w: Watcher, module: Any) -> None:
    cls = getattr(module, "SentenceTransformer", None)
    if cls is None or "encode" not in vars(cls):
        return

    def encode(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            # the texts' parameter is ``inputs`` in sentence-transformers 5+, ``sentences`` before
            w.sentence.encoded(self, args[0] if args else kwargs.get("inputs", kwargs.get("sentences")),
                               tuple(kwargs.get(k) for k in ("prompt_name", "prompt", "task")))
            return out
        return run

    inst.patch(cls, "encode", encode)


def _patch_examples(inst: Installed, w: Watcher, module: Any) -> None:
    cls = getattr(module, "InputExample", None)
    if cls is None:
        return

    inst.patch(cls, "__init__", after_init(w.sentence.example_built))
