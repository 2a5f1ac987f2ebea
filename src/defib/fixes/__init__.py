"""Candidate fixes, applied to a rerun of the user's script to prove them.

A suggested fix is only a guess until a run shows the collapse gone.
``defib run --confirm`` reruns the script for a bounded number of steps with
the fix for the top cause applied through the same interception points that
watch it (the loss call, the optimizer's construction, the DataLoader, the
tokenizer call, zero_grad, the scheduler, the activation on the user's line),
and compares prediction spread and loss against the constant baseline before
and after. The user's files are never edited.

``base`` holds the :class:`~defib.fixes.base.Fix` interface and the registry,
``<area>/<cause name>.py`` the fix for each root cause (one class a file, as
the rules are), ``confirm`` runs the comparison.
"""

from defib.fixes.base import Fix, build, plan

__all__ = ["Fix", "build", "plan"]
