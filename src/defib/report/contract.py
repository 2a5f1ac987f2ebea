"""Read a JSON report back (``defib confirm``): refuse one whose shape is not the contract's, in one line.

A report on disk is the user's file like any other: it may be hand-edited,
cut short, or not a defib report at all. ``defib confirm`` reads its
findings, its signals and its step count, then prints it; each field it
reads is checked here for the type the JSON contract gives it
(docs/architecture.md), so a wrong type is an error naming the field, not a
traceback from deep inside the confirmation.
"""

from __future__ import annotations

from typing import Any

NUMBER = (int, float)
NULL = type(None)
SEVERITIES = ("info", "warning", "error")
# the top-level fields confirm reads or prints, and their types (absent is fine: older reports lack some)
TOP = {"verdict": str, "task": str, "steps_observed": int, "findings": list, "flatline": (dict, NULL),
       "signals": (dict, NULL), "confirmed_fixes": list, "script_exit": (int, NULL),
       "stopped_after_steps": (int, NULL), "observed": (dict, NULL)}
FINDING = {"code": str, "cause": (str, NULL), "severity": str, "confidence": NUMBER, "step": (int, NULL),
           "title": (str, NULL), "message": (str, NULL), "evidence": (dict, NULL), "where": (dict, NULL),
           "fix": (str, NULL), "symptoms": list}
SERIES = ("spread", "loss", "baseline")  # the signals a confirmation compares before and after


def run_report_problem(report: Any) -> str | None:
    """Why ``report`` is not a defib run report that can be confirmed, or None."""
    if not isinstance(report, dict) or "findings" not in report:
        return "no findings"
    for stage in ("check", "probe"):
        if report.get(stage) is not None:
            return f"a report of defib {stage}; defib confirm needs the report of a run (defib run --json)"
    wrong = _wrong_fields(report, TOP, "")
    if wrong:
        return wrong
    for i, finding in enumerate(report["findings"]):
        if not isinstance(finding, dict) or "code" not in finding:
            return f"findings[{i}] is not a finding (an object with a code)"
        wrong = _wrong_fields(finding, FINDING, f"findings[{i}].")
        if wrong:
            return wrong
        if finding.get("severity", "info") not in SEVERITIES:
            return f"findings[{i}].severity is not one of {', '.join(SEVERITIES)}"
        where = finding.get("where")
        if where is not None and not (isinstance(where.get("file"), str) and _is(where.get("line"), int)):
            return f"findings[{i}].where needs a file and a line number"
        if not all(isinstance(s, str) for s in finding.get("symptoms", [])):
            return f"findings[{i}].symptoms must be rule codes"
    for name in SERIES:
        series = (report.get("signals") or {}).get(name)
        if series is None:
            continue
        if not isinstance(series, dict) or not all(
                isinstance(series.get(k, []), list) and all(_is(v, NUMBER) or v is None for v in series.get(k, []))
                for k in ("step", "value")):
            return f"signals.{name} must hold lists of numbers (step, value)"
    return None


def _wrong_fields(obj: dict, schema: dict[str, Any], prefix: str) -> str | None:
    for key, kind in schema.items():
        if key in obj and not _is(obj[key], kind):
            return f"{prefix}{key} is {type(obj[key]).__name__}, not {_name(kind)}"
    return None


def _is(value: Any, kind: Any) -> bool:
    """isinstance, except that true/false is not a number (JSON keeps them apart)."""
    if isinstance(value, bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        return bool in kinds
    return isinstance(value, kind)


def _name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "text", int: "a whole number", float: "a number", list: "a list", dict: "an object", NULL: "null"}
    return " or ".join(dict.fromkeys(names[k] for k in kinds))
