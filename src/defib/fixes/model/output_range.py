"""Fix for model.output_range: the activation that caps the output is skipped."""

from __future__ import annotations

from defib.fixes.base import DropLineActivation, fix_for


@fix_for
class DropRangeActivation(DropLineActivation):
    """Remove the activation that keeps the output from reaching the targets' range."""

    cause = "model.output_range"
