"""defib: find out why a fine-tuned BERT predicts the same score for every input."""

__version__ = "0.1.0"

from defib.api import watch  # noqa: E402
from defib.evidence.preflight import check_data, check_file  # noqa: E402
from defib.evidence.readers import InputError  # noqa: E402

__all__ = ["watch", "check_data", "check_file", "InputError", "__version__"]
