"""defib: find out why a fine-tuned BERT predicts the same score for every input."""

from defib._version import __version__
from defib.api import probe, watch

__all__ = ["probe", "watch", "check_data", "check_file", "InputError", "__version__"]

_LAZY = {"check_data": "defib.stages.check", "check_file": "defib.stages.check",
         "InputError": "defib.evidence.readers"}


def __getattr__(name: str):
    """The data check loads pyarrow; a watched training process (``defib run``) never needs it."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'defib' has no attribute {name!r}")
