"""README.md's set-up commands and .ci/run stay in step.

.ci/run reads its command out of README.md; these tests check that README.md
holds exactly one test command after its marker, that .ci/run runs that very
line, and that the command still has the shape a fresh clone needs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"


def fenced_after(marker: str) -> list[str]:
    """The lines of the first fenced block after ``marker`` in README.md."""
    text = README.read_text(encoding="utf-8")
    assert marker in text, f"README.md lost its {marker} marker"
    block = re.search(r"^```[^\n]*\n(.*?)^```", text.split(marker, 1)[1], re.S | re.M)
    assert block is not None, f"no fenced block after {marker}"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_has_one_test_command():
    lines = fenced_after("<!-- test-command -->")
    assert len(lines) == 1, lines
    assert "pytest" in lines[0] and "pip install -e '.[test]'" in lines[0]


def test_readme_has_one_example_command():
    lines = fenced_after("<!-- example-command -->")
    assert len(lines) == 1, lines
    assert "defib run" in lines[0] and "examples/stsb_flatline.py" in lines[0]
    assert (ROOT / "examples" / "stsb_flatline.py").exists()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_ci_runs_the_readme_command():
    assert CI.stat().st_mode & 0o111, ".ci/run must be executable"
    out = subprocess.run(["bash", str(CI), "--print"], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == fenced_after("<!-- test-command -->")[0]


def test_ci_script_is_strict_and_offline():
    text = CI.read_text(encoding="utf-8")
    assert "set -euo pipefail" in text
    assert "HF_HUB_OFFLINE=1" in text
