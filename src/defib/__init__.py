"""defib: find out why a fine-tuned BERT predicts the same score for every input."""

from typing import Any

from defib import diagnosis as _diagnosis
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


def _html(report: dict[str, Any]) -> str:
    from defib.report.html import render_fragment

    return render_fragment(report)


def _text(report: dict[str, Any]) -> str:
    from defib.report.text import render_text

    return render_text(report)


_diagnosis.RENDERERS.update(html=_html, text=_text)  # a Diagnosis shows itself through the report layer


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext defib``: the ``%%defib`` cell magic (IPython is imported only here, never by ``import defib``)."""
    from defib.integrations.notebook import register_magic

    register_magic(ipython)
