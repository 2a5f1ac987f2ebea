"""Fix for loss.double_activation: the activation before a loss that expects logits is skipped."""

from __future__ import annotations

from defib.fixes.base import DropLineActivation, fix_for


@fix_for
class DropActivation(DropLineActivation):
    """Remove the activation applied on the user's line before the loss."""

    cause = "loss.double_activation"
