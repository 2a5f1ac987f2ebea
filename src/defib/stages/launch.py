"""The parent side of ``defib run`` and ``defib confirm``: start the user's command watched, pick its report.

The command runs unchanged in its own processes, with ``src/defib/_boot`` on
``PYTHONPATH``: every Python process it starts attaches a watcher when it
imports torch and writes one report when it exits (:mod:`defib.stages.run`).
This module sets that up, waits, and keeps the report of the process that
trained. A ``--confirm`` rerun is the same launch with a fix in the
environment (:mod:`defib.fixes.confirm` judges it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from defib.diagnosis import Diagnosis
from defib.stages.run import IGNORE_ENV, REPORT_ENV, STEPS_ENV

BOOT_DIR = Path(__file__).resolve().parent.parent / "_boot"
CONFIRM_MAX_STEPS = 200  # a confirmation rerun is short: at most this many optimizer steps by default


def watched(command: list[str], steps: int, extra_env: dict[str, str] | None = None, quiet: bool = False,
            ignore: tuple[str, ...] = ()) -> tuple[int, dict]:
    """Run ``command`` with defib attached to every Python process it starts; (exit code, report).

    ``ignore``: rule codes the watched processes leave out before deciding the verdict (``--ignore``).
    """
    with tempfile.TemporaryDirectory(prefix="defib-") as tmp:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(BOOT_DIR)] + [p for p in [env.get("PYTHONPATH")] if p])
        env[REPORT_ENV] = tmp
        env[STEPS_ENV] = str(steps)
        if ignore:
            env[IGNORE_ENV] = ",".join(ignore)
        env.update(extra_env or {})
        out = subprocess.DEVNULL if quiet else None
        try:
            proc = subprocess.run(command, env=env, stdout=out, stderr=out)
        except KeyboardInterrupt:
            proc = subprocess.CompletedProcess(command, 130)
        return proc.returncode, pick_report(Path(tmp), proc.returncode)


def pick_report(folder: Path, returncode: int = 0) -> dict:
    """The report of the process that trained (rank 0, then most steps); an inconclusive one if none wrote any.

    A process killed by a signal (SIGKILL, the OOM killer) cannot write its
    report at exit: then the report says so, rather than that torch was never imported.
    """
    best = None
    for path in folder.glob("report.*.json"):
        try:
            rep = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        key = (rep.get("rank", 0) == 0, rep.get("steps_observed", 0))
        if best is None or key > best[0]:
            best = (key, rep)
    if best is not None:
        return best[1]
    report = Diagnosis(verdict="inconclusive", task="unknown", steps=0, flatline=None, findings=[]).to_dict()
    if returncode < 0:
        note = (f"the script was killed by {signal_name(-returncode)} before defib could write its report "
                "(a killed process runs no exit handler)")
    else:
        note = "the command never imported torch or never reached a model"
    report["observed"] = {"note": note}
    return report


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: a process killed by signal N exits 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def confirm_fixes(report: dict, command: list[str], runs: int, steps: int, say: Callable[[str], None]) -> list[dict]:
    """Rerun ``command`` with the fix for each top cause (at most ``runs`` reruns); the confirmations."""
    from defib.fixes.confirm import candidates, confirm

    if not candidates(report, runs):
        say("defib: --confirm: no root cause with a fix that can be applied from outside the script")
        return []
    steps = steps or min(int(report.get("steps_observed") or 0), CONFIRM_MAX_STEPS)
    began = time.perf_counter()
    results = confirm(report, lambda env, n: watched(command, n, env, quiet=True), steps=steps, max_runs=runs,
                      say=say)
    say(f"defib: --confirm took {time.perf_counter() - began:.0f} s extra ({len(results)} rerun(s))")
    return results
