"""No run is lost: `defib run` under signals, crashes and unwritable report paths, with real processes.

- The script SIGKILLed (the OOM killer): the report is its last checkpoint, with the steps seen before.
- SIGTERM or SIGINT to defib alone, or to its whole process group (Ctrl-C): passed on to the script once,
  the report of what was observed, exit 128 + N, and no script left running; the same during a
  ``--confirm`` rerun, with the first run's report.
- A script that ignores the signal is killed after the grace period.
- A crash after healthy steps is not healthy.
- Report paths that cannot be written stop defib before the script starts; a report file that cannot be
  written at the end never loses the terminal report.

The scripts are ``tests/scripts/tiny_loop.py`` (torch only, a short sleep a step, so that a signal lands
mid-training). Readiness is the child's own checkpoint report, found through TMPDIR; never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import SCRIPTS, _env
from typer.testing import CliRunner

from defib.cli import app
from defib.stages import launch

LOOP = [sys.executable, str(SCRIPTS / "tiny_loop.py")]
WAIT = 120  # seconds: the most any wait here may take on a busy machine (each normally takes a few)


def _start(tmp_path: Path, *args: str, command: list[str], new_session: bool = False) -> subprocess.Popen:
    """``defib run --json report.json ARGS -- COMMAND`` in the background, its temporary folders under tmp_path."""
    env = _env()
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "defib.cli", "run", "--json", str(tmp_path / "report.json"), *args, "--", *command]
    return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=new_session)


def _checkpoint(tmp_path: Path, min_steps: int = 1, not_pid: int | None = None) -> tuple[int, dict]:
    """(pid, report) of the first watched process, other than ``not_pid``, whose report has ``min_steps``."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for path in (tmp_path / "tmp").glob("defib-*/report.*.json"):
            pid = int(path.name.split(".")[1])
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # removed meanwhile (the run ended): a written report is never half a file
            if pid != not_pid and report["steps_observed"] >= min_steps:
                return pid, report
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint with {min_steps} steps within {WAIT} s")


def _finish(proc: subprocess.Popen, tmp_path: Path) -> tuple[str, str, dict]:
    out, err = proc.communicate(timeout=WAIT)
    return out, err, json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_script_killed_by_sigkill_keeps_its_last_checkpoint(tmp_path):
    proc = _start(tmp_path, command=LOOP)
    pid, checkpoint = _checkpoint(tmp_path, min_steps=5)  # the second checkpoint: the first is at step 1
    os.kill(pid, signal.SIGKILL)
    out, err, rep = _finish(proc, tmp_path)
    assert proc.returncode == 128 + 9, err
    assert rep["script_exit"] == -9 and rep["partial"] is True
    assert rep["steps_observed"] >= checkpoint["steps_observed"] >= 5
    assert rep["task"] == "regression"
    assert rep["verdict"] == "inconclusive" and rep["observed"]["verdict_so_far"] == "healthy"
    note = rep["observed"]["note"]
    assert "killed by SIGKILL" in note and "checkpoint" in note, note
    assert "killed by SIGKILL" in out  # the terminal says it too
    assert rep["signals"]["step_loss"], "the checkpoint keeps the series for the plots"


@pytest.mark.parametrize("sig, group", [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
                         ids=["SIGTERM-to-defib", "SIGINT-to-defib", "SIGINT-to-the-process-group"])
def test_a_signal_to_defib_reaches_the_script_once_and_the_report_is_kept(tmp_path, sig, group):
    proc = _start(tmp_path, command=LOOP, new_session=group)
    pid, checkpoint = _checkpoint(tmp_path)
    sent = time.monotonic()
    if group:  # Ctrl-C in a terminal: defib and the script both get it
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    out, err, rep = _finish(proc, tmp_path)
    assert proc.returncode == 128 + sig, err
    assert not _alive(pid), "the script outlived defib"
    assert time.monotonic() - sent < launch.GRACE_SECONDS, "the script did not end of the signal itself"
    assert rep["script_exit"] == -sig  # it ended of the signal, as it would have without defib
    assert rep["stop_signal"] == sig.name
    assert rep["partial"] is False  # written by the script as it ended, not the checkpoint
    assert rep["steps_observed"] >= checkpoint["steps_observed"]
    assert rep["verdict"] == "inconclusive" and rep["observed"]["verdict_so_far"] == "healthy"
    assert f"stopped by {sig.name}" in rep["observed"]["note"]
    assert err.count("Traceback") == (1 if sig == signal.SIGINT else 0), err  # one KeyboardInterrupt, never two
    assert "INCONCLUSIVE" in out


def test_stopping_defib_during_a_confirmation_rerun_keeps_the_first_runs_report(tmp_path):
    proc = _start(tmp_path, "--confirm", command=[*LOOP, "--fault", "shape", "--steps", "40", "--sleep", "0.05"])
    first, _ = _checkpoint(tmp_path)
    rerun, _ = _checkpoint(tmp_path, not_pid=first)
    os.kill(proc.pid, signal.SIGTERM)
    out, err, rep = _finish(proc, tmp_path)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not _alive(rerun), "the rerun outlived defib"
    assert "during --confirm" in err, err
    assert rep["stop_signal"] == "SIGTERM"
    assert rep["steps_observed"] == 40 and rep["script_exit"] == 0  # the first run, whole
    assert rep["verdict"] == "flatlined" and rep["findings"][0]["code"] == "L001"
    assert rep["confirmed_fixes"] == []
    assert "FLATLINED" in out


def test_a_script_that_ignores_the_signal_is_killed_after_the_grace_period(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "GRACE_SECONDS", 1.0)
    ready = tmp_path / "pid"
    stubborn = [sys.executable, "-c", "import os, pathlib, signal, sys, time; signal.signal(signal.SIGTERM, "
                "signal.SIG_IGN); pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(60)", str(ready)]

    def stop_when_ready() -> None:
        deadline = time.monotonic() + WAIT
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # to this process, which runs defib's launch

    threading.Thread(target=stop_when_ready, daemon=True).start()
    began = time.monotonic()
    with pytest.raises(launch.Stopped) as stopped:
        launch.watched(stubborn, 0)
    assert stopped.value.signum == signal.SIGTERM and stopped.value.exit_status == 128 + 15
    assert stopped.value.returncode == -9
    assert not _alive(int(ready.read_text()))
    assert time.monotonic() - began < 30
    assert "did not end within 1 s and was killed" in stopped.value.report["observed"]["note"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # defib's handlers are gone with the run


def test_a_crash_after_healthy_steps_is_not_healthy(defib_run):
    r = defib_run(command=[*LOOP, "--sleep", "0", "--crash-after", "15"])
    assert "RuntimeError: planted crash after step 15" in r.stderr, r
    rep = r.report
    assert r.returncode == 1 and rep["script_exit"] == 1
    assert rep["steps_observed"] == 15
    assert rep["verdict"] == "inconclusive" and rep["observed"]["verdict_so_far"] == "healthy"
    assert "exited with status 1 after 15 optimizer steps" in rep["observed"]["note"]
    assert "No collapse in the 15 optimizer steps observed before the script ended" in r.stdout


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes through permissions; sysfs takes no new files from anyone
        return Path("/sys")
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def _run_in_process(*args: str):
    """``defib run ARGS`` in this process (no start-up cost): the click result."""
    return CliRunner().invoke(app, ["run", *args], env={"COLUMNS": "200"})


@pytest.mark.parametrize("option, where", [("--json", "directory"), ("--html", "missing-folder"),
                                           ("--json", "read-only-folder")])
def test_report_paths_that_cannot_be_written_stop_defib_before_the_script(tmp_path, option, where):
    path = {"directory": tmp_path, "missing-folder": tmp_path / "no" / "such" / "r.out",
            "read-only-folder": _unwritable_folder(tmp_path) / "r.out"}[where]
    started = tmp_path / "started"
    r = _run_in_process(option, str(path), "--", sys.executable, "-c", f"open({str(started)!r}, 'w')")
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("defib: error:") and str(path) in lines[0], r.stderr
    assert not started.exists(), "the script ran"
    assert not (tmp_path / "no").exists()


def test_a_report_that_cannot_be_written_at_the_end_keeps_the_terminal_report(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # the script takes the report's folder away (a file where the folder was): the write fails after the run
    swap = f"import pathlib, shutil; shutil.rmtree({str(out)!r}); pathlib.Path({str(out)!r}).write_text('')"
    r = _run_in_process("--json", str(out / "report.json"), "--", sys.executable, "-c", swap)
    assert r.exit_code == 2, r.output
    assert "INCONCLUSIVE" in r.stdout, r.output  # the diagnosis was printed first
    assert "cannot write the report" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
