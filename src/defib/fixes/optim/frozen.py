"""Fix for optim.frozen: the frozen parameters unfrozen and given to the optimizer (in a PEFT model, the head only)."""

from __future__ import annotations

from defib.evidence.params import group_of, is_inactive_copy
from defib.fixes.base import fix_for
from defib.fixes.optim.common import AddParams


@fix_for
class Unfreeze(AddParams):
    """Unfreeze every parameter and give the optimizer all of them.

    When PEFT froze the head (the finding names its modules), only the head
    is unfrozen, as ``modules_to_save`` would train it: the base weights stay
    frozen beside the adapters. PEFT's ``original_module`` copies never run
    while the adapter is on and stay as they are.
    """

    cause = "optim.frozen"

    @classmethod
    def plan(cls, evidence, finding):
        return {"head_only": True} if evidence.get("head_modules") else {}

    @classmethod
    def describe(cls, params):
        if params.get("head_only"):
            return "Unfreeze the head (as modules_to_save would) and give the optimizer its parameters."
        return super().describe(params)

    def unfreezes(self, name: str) -> bool:
        if is_inactive_copy(name):
            return False
        return not self.params.get("head_only") or group_of(name) == "head"
