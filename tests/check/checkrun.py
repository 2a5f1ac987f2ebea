"""Run ``defib check`` in-process (typer's CliRunner): exit code, stdout, stderr, and the JSON report if any."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from defib.cli import app


@dataclass
class CheckResult:
    code: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    exception: BaseException | None

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}\n--- exception {self.exception!r}"


def defib_check(*args: str, json_path: Path | None = None) -> CheckResult:
    argv = ["check", *map(str, args)] + (["--json", str(json_path)] if json_path else [])
    result = CliRunner().invoke(app, argv, env={"COLUMNS": "200", "HF_HUB_OFFLINE": "1"})
    report = json.loads(json_path.read_text(encoding="utf-8")) if json_path and json_path.exists() else None
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return CheckResult(result.exit_code, result.stdout, result.stderr, report, exc)


def write_csv(path: Path, rows: list[tuple], header: tuple = ("text", "label")) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path
