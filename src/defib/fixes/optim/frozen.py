"""Fix for optim.frozen: every parameter unfrozen and given to the optimizer."""

from __future__ import annotations

from defib.fixes.base import fix_for
from defib.fixes.optim.common import AddParams


@fix_for
class Unfreeze(AddParams):
    """Unfreeze every parameter and give the optimizer all of them."""

    cause = "optim.frozen"
    unfreeze = True
