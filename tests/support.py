"""Helpers for tests that run ``defib`` or a test script as a subprocess.

A plain module (not conftest.py): tests import it by name, and two conftest.py
files in one run would shadow each other under that name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).parent / "scripts"


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None

    def __repr__(self) -> str:  # shown by pytest when an assertion on the result fails
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_VERBOSITY"] = "error"
    env["COLUMNS"] = "200"  # rich wraps at the terminal width; keep report lines whole
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny models: one thread is faster and immune to a busy machine
    env.pop("DEFIB_REPORT_DIR", None)
    return env


def run_defib(tmp_path: Path, *args: str, command: list[str] | None = None, timeout: float = 300) -> RunResult:
    """``defib run --json REPORT ARGS -- COMMAND`` as a subprocess; the report is None if none was written.

    With ``command=None`` the arguments are passed to ``defib`` as they are
    (for ``defib rules``, usage errors, ...).
    """
    report_path = tmp_path / "report.json"
    if command is None:
        argv = [sys.executable, "-m", "defib.cli", *args]
    else:
        argv = [sys.executable, "-m", "defib.cli", "run", "--json", str(report_path), *args, "--", *command]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=timeout, cwd=tmp_path)
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else None
    return RunResult(proc.returncode, proc.stdout, proc.stderr, report)


def run_plain(tmp_path: Path, command: list[str], timeout: float = 300) -> RunResult:
    """The same command without defib, for comparisons."""
    proc = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=timeout, cwd=tmp_path)
    return RunResult(proc.returncode, proc.stdout, proc.stderr, None)


def tiny_script(model_dir: Path, *args: str, script: str = "tiny_regression.py") -> list[str]:
    """The command line of one of the test scripts, run by this interpreter."""
    return [sys.executable, str(SCRIPTS / script), "--model", str(model_dir), *args]



def assert_healthy(diagnosis: Any, steps: int) -> None:
    """A watched healthy run: every step seen, regression, no error finding, verdict healthy."""
    assert diagnosis is not None and diagnosis.steps == steps
    assert diagnosis.task == "regression"
    errors = [(f.code, f.message) for f in diagnosis.findings if str(f.severity) == "error"]
    assert not errors, errors
    assert diagnosis.verdict == "healthy", [(f.code, f.message) for f in diagnosis.findings]
