"""defib: find out why a fine-tuned BERT predicts the same score for every input."""

__version__ = "0.1.0"

from defib.api import watch  # noqa: E402

__all__ = ["watch", "__version__"]
