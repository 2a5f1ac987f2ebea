"""Fix for optim.lr_too_low: every group's lr scaled up to a healthy update size."""

from __future__ import annotations

from defib.fixes.base import fix_for
from defib.fixes.optim.common import SetLr


@fix_for
class RaiseLr(SetLr):
    """Scale every group's lr up to where the measured update size becomes a healthy one."""

    cause = "optim.lr_too_low"
    ratio_key = "update_ratio_median"
