"""defib: find out why a fine-tuned BERT predicts the same score for every input."""

__version__ = "0.1.0"

from defib.api import probe, watch  # noqa: E402

__all__ = ["probe", "watch", "__version__"]
