"""The shape of a JSON report read back (``defib report``, ``compare``, ``confirm``): one line when it is wrong.

A report on disk is the user's file like any other: it may be hand-edited,
cut short, or not a defib report at all. Each field a command reads is
checked here for the type the JSON contract gives it (docs/architecture.md),
so a wrong type is an error naming the field, not a traceback from deep
inside a renderer or the confirmation. :mod:`defib.report.saved` reads the
file and applies these checks.
"""

from __future__ import annotations

from typing import Any

NUMBER = (int, float)
NULL = type(None)
VERDICTS = ("healthy", "flatlined", "at_risk", "inconclusive")
SEVERITIES = ("info", "warning", "error")
# the top-level fields the commands that read a report index, and their types (absent is fine: older reports
# lack some)
TOP = {"defib_version": str, "verdict": str, "task": (str, NULL), "steps_observed": int, "findings": list,
       "flatline": (dict, NULL), "signals": (dict, NULL), "confirmed_fixes": list, "script_exit": (int, NULL),
       "stopped_after_steps": (int, NULL), "observed": (dict, NULL), "check": (dict, NULL), "probe": (dict, NULL),
       "predict": (dict, NULL)}
FINDING = {"cause": (str, NULL), "severity": str, "confidence": NUMBER, "step": (int, NULL),
           "title": (str, NULL), "message": (str, NULL), "evidence": (dict, NULL), "where": (dict, NULL),
           "fix": (str, NULL), "symptoms": (list, NULL)}
PREDICT = {"rows": int, "distinct_texts": int, "distinct_encodings": int, "rows_at_max_length": int,
           "output_spread": (NUMBER, NULL), "top_class_share": (NUMBER, NULL), "max_length": (int, NULL)}
SERIES = ("spread", "loss", "baseline")  # the signals a confirmation and a comparison read


def report_problem(report: Any) -> str | None:
    """Why ``report`` is not a defib report that the commands reading one (report, compare, confirm) can
    render and use, or None. Each check is something a renderer or the confirmation indexes unguarded."""
    if not isinstance(report, dict):
        return f"a JSON {type(report).__name__}, not an object"
    if "findings" not in report:
        return "no findings"
    wrong = _wrong_fields(report, TOP, "")
    if wrong:
        return wrong
    wrong = _wrong_fields(report.get("predict") or {}, PREDICT, "predict.")
    if wrong:
        return wrong
    if report.get("verdict") not in VERDICTS:
        return f"verdict {report.get('verdict')!r} is none of {', '.join(VERDICTS)}"
    for i, finding in enumerate(report["findings"]):
        if not isinstance(finding, dict) or not isinstance(finding.get("code"), str):
            return f"finding {i + 1} has no code"
        code = finding["code"]
        wrong = _wrong_fields(finding, FINDING, f"finding {code}: ")
        if wrong:
            return wrong
        if finding.get("severity", "info") not in SEVERITIES:
            return f"finding {code}: severity is not one of {', '.join(SEVERITIES)}"
        where = finding.get("where")
        if where is not None and not (isinstance(where.get("file"), str) and _is(where.get("line"), int)):
            return f"finding {code}: where has no file and line"
        if not all(isinstance(s, str) for s in finding.get("symptoms") or []):
            return f"finding {code}: symptoms are not codes"
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
            return f"{prefix}{key} is a {type(obj[key]).__name__}, not {_name(kind)}"
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
