"""What defib wraps in Hugging Face ``datasets``, once it is imported: the making of each ``Dataset``.

A library trainer (sentence-transformers') reads the labels from a column of the Dataset it is given; the
user's line that made that column is where a finding about the labels points
(:mod:`defib.evidence.watch.columns`). Every Dataset that is not a copy goes through ``Dataset.__init__``
(``from_dict``, ``map``, ``add_column``, ``select``...); the copies carry the record with their attributes.
"""

from __future__ import annotations

from typing import Any, Callable

from defib.evidence.hooks.patching import Installed, after_init
from defib.evidence.watch import Watcher


def datasets_callbacks(inst: Installed, w: Watcher) -> dict[str, Callable[[Any], None]]:
    """The post-import callback that patches ``datasets.arrow_dataset`` as it loads."""
    def patch(module: Any) -> None:
        cls = getattr(module, "Dataset", None)
        if cls is not None and "__init__" in vars(cls):
            inst.patch(cls, "__init__", after_init(w.sentence.dataset_made))
    return {"datasets.arrow_dataset": patch}
