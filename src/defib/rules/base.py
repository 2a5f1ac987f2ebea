"""Rules, findings and the registry.

A rule is a pure function from :class:`~defib.signals.Signals` to a
:class:`Finding` or nothing. It declares the signal paths it reads in
``needs``; the engine skips a rule whose signals are missing and says so, so a
silent rule always means "looked and found nothing", never "could not look".

Codes are an area letter and a number: D data, L loss, O optim, M model,
E eval, and S for symptoms (what a collapse looks like from outside: flat
predictions, a loss stuck at the constant baseline, divergence). Symptom
findings carry ``cause=None``; the diagnosis folds them under the root cause
that explains them. Codes are never reused or renumbered.

Each rule's docstring is its only long explanation, in four sections
(What it detects / Why it flattens predictions / Example / Fix); ``defib rule
CODE`` and the reports read it from there.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Any, ClassVar

from defib.causes import CAUSES
from defib.signals.common import Where  # noqa: F401  (re-exported: rules build findings with it)

SECTIONS = ("What it detects", "Why it flattens predictions", "Example", "Fix")


class Severity(enum.IntEnum):
    """How bad a finding is; ordered so that ``max()`` picks the worst."""

    INFO = 0
    WARNING = 1
    ERROR = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass
class Finding:
    """One diagnosis statement with this run's numbers."""

    code: str
    cause: str | None
    severity: Severity
    confidence: float
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    where: Where | None = None
    fix: str = ""
    step: int | None = None
    title: str = ""
    symptoms: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "cause": self.cause,
            "severity": str(self.severity),
            "confidence": round(float(self.confidence), 3),
            "step": self.step,
            "title": self.title,
            "message": self.message,
            "evidence": self.evidence,
            "where": self.where.to_dict() if self.where else None,
            "fix": self.fix,
            "symptoms": list(self.symptoms),
        }


class Rule:
    """Base class: subclass, set the class attributes, implement :meth:`check`.

    Thresholds are class attributes with a comment each saying why that
    value; a subclass or a test can set them. Numbers that a rule shares with
    its twin (run time / data check / probe), with a fix or with a plot are
    initialised from :mod:`defib.rules.thresholds`.
    """

    code: ClassVar[str] = ""
    cause: ClassVar[str | None] = None
    title: ClassVar[str] = ""
    severity: ClassVar[Severity] = Severity.WARNING
    needs: ClassVar[tuple[str, ...]] = ()
    # Which evidence the rule reads: "run" (a watched training run), "check"
    # (a data file before training), "probe" (active questions to a model) or
    # "predict" (a fine-tuned model's own predictions, defib predict).
    # One catalogue and one engine serve them all; a stage's diagnosis runs
    # only its own rules, so a data check never lists the runtime rules as
    # skipped for want of gradients.
    stage: ClassVar[str] = "run"

    def check(self, s: Any) -> Finding | None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement check()")

    def finding(self, message: str, *, confidence: float, evidence: dict[str, Any] | None = None,
                where: Where | None = None, fix: str = "", severity: Severity | None = None) -> Finding:
        """Build a finding stamped with this rule's code, cause and title."""
        return Finding(code=self.code, cause=self.cause, title=self.title,
                       severity=self.severity if severity is None else severity,
                       confidence=max(0.0, min(1.0, confidence)), message=message,
                       evidence=evidence or {}, where=where, fix=fix)

    @classmethod
    def doc(cls) -> dict[str, str]:
        """The docstring split into its sections (What it detects, ...)."""
        text = inspect.cleandoc(cls.__doc__ or "")
        out: dict[str, str] = {}
        current = "summary"
        for line in text.splitlines():
            stripped = line.strip().rstrip(":")
            if stripped in SECTIONS:
                current = stripped
                out[current] = ""
                continue
            out[current] = (out.get(current, "") + line + "\n")
        return {k: v.strip() for k, v in out.items()}


_REGISTRY: dict[str, type[Rule]] = {}


def worst_problem(problems: list[tuple[Severity, str]]) -> tuple[Severity, str]:
    """For a rule that checks several things at once: the worst severity, and one sentence that leads with
    the first problem at that severity and counts the others (which the finding's evidence lists)."""
    worst = max(sev for sev, _ in problems)
    lead = next(msg for sev, msg in problems if sev == worst)
    more = f" (and {len(problems) - 1} more problem(s) in the evidence)" if len(problems) > 1 else ""
    return worst, f"{lead[0].upper()}{lead[1:]}{more}."


def register(cls: type[Rule]) -> type[Rule]:
    """Class decorator: add a rule to the catalogue (codes must be unique)."""
    if not cls.code:
        raise ValueError(f"{cls.__name__} has no code")
    if cls.code in _REGISTRY and _REGISTRY[cls.code] is not cls:
        raise ValueError(f"rule code {cls.code} registered twice")
    if cls.cause is not None and cls.cause not in CAUSES:
        raise ValueError(f"{cls.code}: unknown cause {cls.cause!r}")
    _REGISTRY[cls.code] = cls
    return cls


STAGES = ("run", "check", "probe", "predict")


def all_rules(stage: str | None = None) -> dict[str, type[Rule]]:
    """Every rule (of one stage, if given), discovered by importing each module under ``defib.rules``."""
    import defib.rules as pkg

    if stage is not None and stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    for info in pkgutil.walk_packages(pkg.__path__, prefix="defib.rules."):
        importlib.import_module(info.name)
    return {code: cls for code, cls in sorted(_REGISTRY.items()) if stage is None or cls.stage == stage}


def resolve(obj: Any, path: str) -> Any:
    """Follow a dotted path of attributes; None if any step is missing."""
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj
