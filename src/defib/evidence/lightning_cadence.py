"""Where a Lightning module says how often its scheduler is stepped.

``configure_optimizers`` hands Lightning a scheduler, and Lightning steps it
once per *epoch* unless the scheduler's configuration says
``"interval": "step"``. A warmup schedule from transformers
(``get_linear_schedule_with_warmup``) counts optimizer steps: stepped once per
epoch it stays at its first value, a learning rate of 0, for the whole first
epoch, which is often the whole run. The line to edit is then not the one
that built the scheduler but ``"interval": "epoch"``, or, when no interval is
given, the ``return`` that hands the scheduler over (Lightning's default).
Static and conservative: one such line in ``configure_optimizers``, else None.
"""

from __future__ import annotations

import ast

from defib.evidence.callsite import _tree


def cadence_line(filename: str, line: int) -> int | None:
    """The line in the ``configure_optimizers`` spanning ``line`` that makes Lightning step per epoch: the
    ``"interval"`` entry set to ``"epoch"``, else (no interval entry at all) its one ``return``; None when
    ``line`` is not in a ``configure_optimizers`` or an entry asks for steps."""
    tree = _tree(filename)
    if tree is None:
        return None
    method = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                   and n.name == "configure_optimizers" and n.lineno <= line <= (n.end_lineno or n.lineno)), None)
    if method is None:
        return None
    intervals = [v for d in ast.walk(method) if isinstance(d, ast.Dict) for k, v in zip(d.keys, d.values)
                 if isinstance(k, ast.Constant) and k.value == "interval"]
    if intervals:
        epochs = [v.lineno for v in intervals if isinstance(v, ast.Constant) and v.value == "epoch"]
        return epochs[0] if len(epochs) == len(intervals) == 1 else None
    returns = [n for n in ast.walk(method) if isinstance(n, ast.Return) and n.value is not None]
    return returns[0].lineno if len(returns) == 1 else None
