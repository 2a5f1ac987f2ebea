"""A JSON report read back from disk, for ``defib report``, ``defib compare`` and ``defib confirm``.

A report file may come from a colleague, an older or newer defib, or be
something else altogether; every way it can be wrong is one
:class:`ReportError` whose message is the one line the command prints. The
checks on its fields (:mod:`defib.report.contract`) are what the renderers
and the confirmation index without a guard, so a report that passes renders
without a traceback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from defib._version import __version__
from defib.report.contract import report_problem

COMPARED_SERIES = ("spread", "loss", "baseline")  # what `defib compare` draws: the spread, the loss and its baseline
_VERSION = re.compile(r"(\d+)\.(\d+)")


class ReportError(ValueError):
    """A file that is not a report defib can read; the message names the file and says why, in one line."""


def load(path: Path) -> dict[str, Any]:
    """The report dict in ``path``, checked to be a defib report this version can render."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory, not a report") from None
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not a defib JSON report (not UTF-8 text)") from None
    except ValueError as exc:
        raise ReportError(f"{path}: not a defib JSON report (not JSON: {exc})") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the report: {exc.strerror or exc}") from None
    why = report_problem(report)
    if why:
        raise ReportError(f"{path}: not a defib JSON report ({why})")
    if "defib_version" in report:  # a report put together by hand may leave it out; every defib report has it
        _check_version(path, report["defib_version"])
    return report


def _check_version(path: Path, version: str) -> None:
    """Refuse a report from a later major version (its fields may mean something else); older ones only lack fields."""
    got, ours = _VERSION.match(version), _VERSION.match(__version__)
    if got is None:
        raise ReportError(f"{path}: not a defib JSON report (defib_version {version!r} is not a version)")
    if int(got.group(1)) > int(ours.group(1)):
        raise ReportError(f"{path}: written by defib {version}, a later version than this defib {__version__}; "
                          "upgrade defib to read it")


def kind(report: dict[str, Any]) -> str:
    """Which command wrote the report: check, probe, predict or a watched run (run, train, defib.watch).

    A predict report of an older defib has no ``predict`` section: it is what is left without a run's keys.
    """
    if report.get("check") is not None:
        return "check"
    if report.get("probe") is not None:
        return "probe"
    if report.get("predict") is not None:
        return "predict"
    if report.get("signals") is not None or "script_exit" in report or "observed" in report:
        return "run"
    return "predict"


def series(report: dict[str, Any], name: str) -> tuple[list[int], list[float | None]]:
    """One recorded series of a watched run (``signals[name]``) as steps and values, checked to be one."""
    s = (report.get("signals") or {}).get(name)
    if not isinstance(s, dict):
        raise KeyError(name)
    steps, values = s.get("step"), s.get("value")
    if not (isinstance(steps, list) and isinstance(values, list) and len(steps) == len(values)
            and all(isinstance(x, int) for x in steps)
            and all(v is None or isinstance(v, (int, float)) for v in values)):
        raise ValueError(name)
    return steps, [None if v is None else float(v) for v in values]


def load_run(path: Path) -> dict[str, Any]:
    """A watched run's report with the series ``defib compare`` draws; another kind of report is a ReportError."""
    report = load(path)
    what = kind(report)
    if what != "run":
        raise ReportError(f"{path}: a defib {what} report; compare needs the reports of two watched runs "
                          "(defib run --json, defib train's defib_report.json, defib.watch)")
    if report.get("signals") is None:
        raise ReportError(f"{path}: no recorded series (its signals were left out); write the report with "
                          "defib run --json, which keeps them")
    for name in COMPARED_SERIES:
        try:
            steps, _ = series(report, name)
        except KeyError:
            raise ReportError(f"{path}: no {name} series in its signals (the run recorded no predictions)") from None
        except ValueError:
            raise ReportError(f"{path}: not a defib JSON report (signals.{name} is not a series)") from None
        if not steps:
            raise ReportError(f"{path}: the {name} series is empty (the run recorded no predictions)")
    return report
