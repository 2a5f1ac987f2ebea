"""Fix for optim.missing_params: the trainable parameters the optimizer lacks added to it."""

from __future__ import annotations

from defib.fixes.base import fix_for
from defib.fixes.optim.common import AddParams


@fix_for
class AddMissingParams(AddParams):
    """optimizer = AdamW(model.parameters(), ...): every trainable parameter in the optimizer."""

    cause = "optim.missing_params"
