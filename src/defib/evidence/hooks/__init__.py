"""Global PyTorch hooks and patch points: how defib sees a script it did not write.

Two kinds of interception, both observe-only:

* PyTorch's own global hooks: module forward pre/post hooks and optimizer
  step pre/post hooks. They reach every module and optimizer, including the
  ones the transformers ``Trainer`` or Lightning build.
* Thin wrappers around functions that have no hook: the functional losses,
  ``Tensor.backward``, ``zero_grad``, the constructors of optimizers,
  schedulers and DataLoaders, ``GradScaler``'s ``scale`` and ``step``
  (:mod:`.torch_patches`), once transformers is imported, tokenizer calls
  and ``from_pretrained`` (:mod:`.transformers_patches`), and, once
  sentence-transformers is, its loss modules and models' forward (:mod:`.st_patches`), and once
  ``datasets`` is, the making of each Dataset (:mod:`.datasets_patches`).
  Each wrapper calls the original with the same arguments and returns its
  result untouched, so the run computes exactly what it would without defib.
  The one exception is a ``defib run --confirm`` rerun: there the Watcher
  carries a candidate fix (:mod:`defib.fixes`) that the wrappers consult.

Each hook calls the watcher part that owns the event (see :mod:`defib.evidence.watch`).
:func:`install` returns a handle whose ``remove()`` puts everything back
(:mod:`.patching` holds the mechanics).
"""

from __future__ import annotations

from defib.evidence.hooks.datasets_patches import datasets_callbacks
from defib.evidence.hooks.patching import Installed
from defib.evidence.hooks.st_patches import st_callbacks
from defib.evidence.hooks.torch_patches import install_torch
from defib.evidence.hooks.transformers_patches import transformers_finder
from defib.evidence.watch import Watcher

__all__ = ["Installed", "install"]


def install(w: Watcher) -> Installed:
    """Attach ``w`` to every model, optimizer and loss in this process."""
    inst = Installed()
    install_torch(inst, w)
    inst.finder = transformers_finder(inst, w)
    inst.finder.callbacks.update(st_callbacks(inst, w))
    inst.finder.callbacks.update(datasets_callbacks(inst, w))
    inst.finder.install()
    return inst
