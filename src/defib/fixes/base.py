"""The Fix interface: hooks a candidate fix may use, all no-ops by default.

A fix is planned in the parent process from a finding (``plan``: cause and
evidence → JSON-safe parameters, or None when it cannot be applied from the
outside), then rebuilt in the rerun's process (``build``) and handed to the
Watcher, whose wrappers consult it at each interception point. Hooks that
raise are caught by the caller and reported as defib internal errors: a fix
that breaks must show up as "not confirmed", never as the user's bug.

Each fix is one class in ``defib/fixes/<area>/<cause name>.py``, registered
with :func:`fix_for` and found by walking the package, as the rules are.
Helpers only one area uses live in that area's ``common.py``; the few that
several areas share live here.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Any, ClassVar

_FIXES: dict[str, type["Fix"]] = {}


def fix_for(cls: type["Fix"]) -> type["Fix"]:
    """Class decorator: register the fix for ``cls.cause``."""
    if cls.cause in _FIXES:
        raise ValueError(f"two fixes for {cls.cause}")
    _FIXES[cls.cause] = cls
    return cls


def _load() -> dict[str, type["Fix"]]:
    """Every fix, discovered by importing each module under ``defib.fixes``."""
    import defib.fixes as pkg

    for info in pkgutil.walk_packages(pkg.__path__, prefix="defib.fixes."):
        importlib.import_module(info.name)
    return _FIXES


def plan(finding: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON-safe fix spec for a finding of the report, or None if no fix applies from outside."""
    cls = _load().get(finding.get("cause") or "")
    if cls is None:
        return None
    params = cls.plan(finding.get("evidence") or {}, finding)
    if params is None:
        return None
    return {"cause": cls.cause, "params": params, "description": cls.describe(params),
            "compare_loss": not cls.rescales_loss}


def build(spec: dict[str, Any]) -> "Fix":
    """The fix object for a spec made by :func:`plan` (in the rerun's process)."""
    return _load()[spec["cause"]](spec.get("params") or {})


class Fix:
    """Base class: override the hooks the fix needs.

    ``plan`` and ``describe`` are classmethods (they run in the parent);
    everything else runs inside the rerun, called by defib's wrappers.
    """

    cause: ClassVar[str] = ""
    # the fix changes what the loss measures (class weights): its loss is not comparable with the
    # first run's or with the unweighted constant-predictor baseline, so only the spread is judged
    rescales_loss: ClassVar[bool] = False

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self._done = False

    def first_time(self) -> bool:
        """True on the first call only: for fixes that change the model once, before its first step."""
        done, self._done = self._done, True
        return not done

    @classmethod
    def plan(cls, evidence: dict[str, Any], finding: dict[str, Any]) -> dict[str, Any] | None:
        return {}

    @classmethod
    def describe(cls, params: dict[str, Any]) -> str:
        return cls.__doc__.strip().splitlines()[0] if cls.__doc__ else cls.cause

    # -- hooks (rerun side) -------------------------------------------------
    def loss_args(self, fn: str, input: Any, target: Any, named: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
        """Change what reaches a loss function (``fn`` is its torch.nn.functional name)."""
        return input, target, named

    def skip_activation(self, filename: str, line: int) -> bool:
        """True to make the activation called on this user line return its input unchanged."""
        return False

    def tokenizer_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return kwargs

    def loader_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments of ``DataLoader(...)`` (positional ones already bound to their names)."""
        return kwargs

    def optimizer_created(self, optimizer: Any) -> None:
        pass

    def model_inputs(self, model: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]] | None:
        """New (args, kwargs) for the top-level model's forward, from its second call on; None keeps them."""
        return None

    def model_output(self, module: Any, output: Any, graph_loss: bool) -> Any:
        """A new output for a top-level module's training forward (a model, a head the script calls); None keeps it.

        ``graph_loss``: the run's training loss so far is written by hand and read from ``backward()``'s graph,
        so no loss call of defib's can take a fix; the model's output is the last point before the loss.
        """
        return None

    def skip_zero_grad(self) -> bool:
        return False

    def before_step(self, optimizer: Any, watcher: Any) -> None:
        pass

    def after_step(self, optimizer: Any) -> None:
        pass

    def scheduler_created(self, scheduler: Any) -> None:
        pass

    def skip_scheduler_step(self) -> bool:
        return False


class DropLineActivation(Fix):
    """Shared: make the activation called on the finding's user line return its input unchanged."""

    @classmethod
    def plan(cls, evidence, finding):
        where = finding.get("where")
        return {"file": where["file"], "line": where["line"]} if where else None

    @classmethod
    def describe(cls, params):
        return f"drop the activation on {params['file']}:{params['line']}"

    def skip_activation(self, filename: str, line: int) -> bool:
        return line == self.params["line"] and _same_file(filename, self.params["file"])


def scale_grads(optimizer: Any, factor: float | None) -> None:
    if not factor:
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad.mul_(factor)


def _same_file(a: str, b: str) -> bool:
    return os.path.basename(a) == os.path.basename(b) and (
        os.path.abspath(a) == os.path.abspath(b) or not os.path.isabs(b))
