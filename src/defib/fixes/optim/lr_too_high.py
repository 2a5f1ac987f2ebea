"""Fix for optim.lr_too_high: every group's lr scaled down to a healthy update size."""

from __future__ import annotations

from defib.fixes.base import fix_for
from defib.fixes.optim.common import SetLr


@fix_for
class LowerLr(SetLr):
    """Scale every group's lr down to where the measured update size becomes a healthy one."""

    cause = "optim.lr_too_high"
    ratio_key = "update_ratio_peak"
