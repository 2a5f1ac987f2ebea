"""The Fix interface: hooks a candidate fix may use, all no-ops by default.

A fix is planned in the parent process from a finding (``plan``: cause and
evidence → JSON-safe parameters, or None when it cannot be applied from the
outside), then rebuilt in the rerun's process (``build``) and handed to the
Watcher, whose wrappers consult it at each interception point. Hooks that
raise are caught by the caller and reported as defib internal errors: a fix
that breaks must show up as "not confirmed", never as the user's bug.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

_FIXES: dict[str, type["Fix"]] = {}


def fix_for(cls: type["Fix"]) -> type["Fix"]:
    """Class decorator: register the fix for ``cls.cause``."""
    if cls.cause in _FIXES:
        raise ValueError(f"two fixes for {cls.cause}")
    _FIXES[cls.cause] = cls
    return cls


def _load() -> dict[str, type["Fix"]]:
    for area in ("data", "loss", "optim", "model"):
        importlib.import_module(f"defib.fixes.{area}")
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
