"""The parent side of ``defib run`` and ``defib confirm``: start the user's command watched, pick its report.

The command runs unchanged in its own processes, with ``src/defib/_boot`` on
``PYTHONPATH``: every Python process it starts attaches a watcher when it
imports torch and writes one report when it exits, and the training process
rewrites it during training (:mod:`defib.stages.run`). This module sets that
up, waits, and keeps the report of the process that trained. A ``--confirm``
rerun is the same launch with a fix in the environment
(:mod:`defib.fixes.confirm` judges it).

No run is lost: a script killed by a signal still has its last checkpoint;
SIGINT and SIGTERM sent to defib are passed on to the script, which gets
``GRACE_SECONDS`` to end before it is killed, so it is never left running
alone; and a script that did not end normally is never called healthy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from defib.diagnosis import Diagnosis
from defib.stages.run import IGNORE_ENV, LOG_TO_ENV, REPORT_ENV, STEPS_ENV

if TYPE_CHECKING:
    from defib.fixes.confirm import RunFn

BOOT_DIR = Path(__file__).resolve().parent.parent / "_boot"
CONFIRM_MAX_STEPS = 200  # a confirmation rerun is short: at most this many optimizer steps by default
GRACE_SECONDS = 20.0  # after passing a stop signal on, the script has this long to end before it is killed
POLL_SECONDS = 0.2  # how often defib looks whether the script has ended (the stop signals are handled meanwhile)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """defib was stopped by a signal while it ran a watched command; it passed the signal on and kept the report."""

    def __init__(self, signum: int, returncode: int, report: dict):
        super().__init__(signal_name(signum))
        self.signum, self.returncode, self.report = signum, returncode, report

    @property
    def exit_status(self) -> int:
        """defib's own exit status: 128 + N, as for any program that signal N stopped."""
        return 128 + self.signum


class StopSignals:
    """SIGINT and SIGTERM sent to defib: remembered, and passed on to the script running now.

    Installed from the main thread only (signal handlers can be set nowhere
    else); elsewhere, defib used as a library, the signals do what they did.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.child: subprocess.Popen | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._received) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *_exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _received(self, signum: int, _frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        if self.child is not None:
            try:
                self.child.send_signal(signum)
            except ProcessLookupError:
                pass  # it ended in the meantime


@contextmanager
def _stop_signals(stop: StopSignals | None) -> Iterator[StopSignals]:
    """The caller's ``stop`` when it handles the stop signals already, else a handler for the block."""
    if stop is not None:
        yield stop
        return
    with StopSignals() as own:
        yield own


def watched(command: list[str], steps: int, extra_env: dict[str, str] | None = None, quiet: bool = False,
            ignore: tuple[str, ...] = (), stop: StopSignals | None = None, log_to: str = "auto") -> tuple[int, dict]:
    """Run ``command`` with defib attached to every Python process it starts; (exit code, report).

    ``ignore``: rule codes the watched processes leave out before deciding the verdict (``--ignore``).
    ``log_to``: the experiment tracker the watched processes write defib's series into (``--log-to``).
    Raises :class:`Stopped`, with the report of what was observed, when defib
    was stopped by a signal before or while the command ran.
    """
    with tempfile.TemporaryDirectory(prefix="defib-") as tmp, _stop_signals(stop) as stop:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(BOOT_DIR)] + [p for p in [env.get("PYTHONPATH")] if p])
        env[REPORT_ENV] = tmp
        env[STEPS_ENV] = str(steps)
        if ignore:
            env[IGNORE_ENV] = ",".join(ignore)
        env[LOG_TO_ENV] = log_to
        env.update(extra_env or {})
        out = subprocess.DEVNULL if quiet else None
        returncode, killed = 0, False
        if stop.signum is None:
            stop.child = subprocess.Popen(command, env=env, stdout=out, stderr=out)
            try:
                returncode, killed = _wait(stop.child, stop)
            finally:
                stop.child = None
        report = pick_report(Path(tmp), returncode)
        settle(report, returncode, stop.signum, killed)
        if stop.signum is not None:
            raise Stopped(stop.signum, returncode, report)
        return returncode, report


def _wait(child: subprocess.Popen, stop: StopSignals) -> tuple[int, bool]:
    """The script's exit code, once it ends; after a stop signal it gets ``GRACE_SECONDS``, then SIGKILL.

    The second value says whether defib killed it.
    """
    deadline = None
    while True:
        try:
            return child.wait(timeout=POLL_SECONDS), False
        except subprocess.TimeoutExpired:
            pass
        if stop.signum is None:
            continue
        name = signal_name(stop.signum)
        if deadline is None:
            deadline = time.monotonic() + GRACE_SECONDS
            print(f"defib: {name}: passed on to the script, which has {GRACE_SECONDS:.0f} s to end; the report of "
                  "what was observed follows", file=sys.stderr, flush=True)
        elif time.monotonic() >= deadline:
            print(f"defib: the script did not end within {GRACE_SECONDS:.0f} s of {name}: killing it",
                  file=sys.stderr, flush=True)
            child.kill()
            return child.wait(), True


def pick_report(folder: Path, returncode: int = 0) -> dict:
    """The report of the process that trained (rank 0, then most steps); an inconclusive one if none wrote any.

    A report is missing when the script ended by a signal before its first
    training step (the training process checkpoints its report from then
    on): then the report says so, rather than that torch was never imported.
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
        note = f"the script was killed by {signal_name(-returncode)} before defib saw a training step"
    else:
        note = "the command never imported torch or never reached a model"
    report["observed"] = {"note": note}
    return report


def settle(report: dict, returncode: int, stop_signum: int | None = None, killed: bool = False) -> None:
    """Say in the report how the script ended; a run that did not end normally is never called healthy.

    A crash, a kill or a stop after some healthy steps says nothing about the
    steps that were never taken: the verdict becomes ``inconclusive`` and the
    note says what was observed before the end.
    """
    if report.get("partial") is None:
        report["partial"] = False
    if stop_signum is not None:
        report["stop_signal"] = signal_name(stop_signum)
    if returncode == 0 and stop_signum is None:
        return
    observed = report.setdefault("observed", {})
    steps = int(report.get("steps_observed") or 0)
    parts = []
    if stop_signum is not None:
        parts.append(f"defib was stopped by {signal_name(stop_signum)} and passed it on to the script")
    if killed:
        parts.append(f"the script did not end within {GRACE_SECONDS:.0f} s and was killed after {steps} optimizer "
                     "steps observed")
    elif observed.get("note"):  # no process wrote a report: the note already says how the script ended
        parts.append(observed["note"])
    elif returncode < 0 and -returncode == stop_signum:
        parts.append(f"it ended of it after {steps} optimizer steps observed")
    elif returncode < 0:
        parts.append(f"the script was killed by {signal_name(-returncode)} after {steps} optimizer steps observed")
    elif returncode > 0:
        parts.append(f"the script exited with status {returncode} after {steps} optimizer steps observed")
    if report["partial"]:
        parts.append(f"this report is defib's last checkpoint during training, at step {steps}")
    if report.get("verdict") == "healthy":
        report["verdict"] = "inconclusive"
        observed["verdict_so_far"] = "healthy"
        parts.append("no collapse was seen in those steps, but a run that did not end normally is not called healthy")
    observed["note"] = "; ".join(parts)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: a process killed by signal N exits 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class RunOutcome:
    """What ``defib run`` did: the report, and the exit status it owes the shell for the script's end."""

    report: dict
    status: int  # the script's status as a shell reports it (128 + N if killed by signal N), or 128 + N if defib was
    stopped: bool  # ... stopped by signal N: then that status decides, whatever the diagnosis


def run_command(command: list[str], steps: int, ignore: tuple[str, ...], confirm_runs: int, confirm_steps: int,
                say: Callable[[str], None], log_to: str = "auto") -> RunOutcome:
    """``defib run``: the watched run, then with ``confirm_runs`` its confirmation reruns; SIGINT/SIGTERM stop both.

    Stopped during a rerun, the report is still the first run's.
    """
    with StopSignals() as stop:
        try:
            returncode, report = watched(command, steps, ignore=ignore, stop=stop, log_to=log_to)
        except Stopped as exc:
            returncode, report = exc.returncode, exc.report
        report["script_exit"] = returncode
        report["command"] = command
        if confirm_runs and stop.signum is None:
            try:
                report["confirmed_fixes"] = confirm_fixes(report, command, confirm_runs, confirm_steps, say, stop)
            except Stopped as exc:
                say(f"defib: {signal_name(exc.signum)} during --confirm: the rerun was stopped; the report is the "
                    "first run's")
    if stop.signum is None:
        return RunOutcome(report, exit_status(returncode), False)
    report["stop_signal"] = signal_name(stop.signum)
    return RunOutcome(report, 128 + stop.signum, True)


def confirm_fixes(report: dict, command: list[str], runs: int, steps: int, say: Callable[[str], None],
                  stop: StopSignals | None = None) -> list[dict]:
    """Rerun ``command`` with the fix for each top cause (at most ``runs`` reruns); the confirmations.

    Raises :class:`Stopped` when defib is stopped during a rerun.
    """
    # a rerun is defib's experiment, not the user's run: it writes nothing into the script's trackers
    return confirm_reruns(report, lambda env, n: watched(command, n, env, quiet=True, stop=stop, log_to="none"),
                          runs, steps, say)


def confirm_reruns(report: dict, rerun: RunFn, runs: int, steps: int, say: Callable[[str], None]) -> list[dict]:
    """The confirmation of ``report``'s top causes by ``rerun(extra_env, steps)``: a script's, or a notebook cell's.

    ``steps`` 0: as many as the run observed, at most ``CONFIRM_MAX_STEPS``.
    """
    from defib.fixes.confirm import candidates, confirm

    if not candidates(report, runs):
        say("defib: --confirm: no root cause with a fix that can be applied from outside the script")
        return []
    steps = steps or min(int(report.get("steps_observed") or 0), CONFIRM_MAX_STEPS)
    began = time.perf_counter()
    results = confirm(report, rerun, steps=steps, max_runs=runs, say=say)
    say(f"defib: --confirm took {time.perf_counter() - began:.0f} s extra ({len(results)} rerun(s))")
    return results
