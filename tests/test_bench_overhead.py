"""bench/overhead/stacks.py runs under every training stack it names, on the tiny BERT, in its quick mode.

The timings of a quick run on a tiny model say nothing; what must hold is
that each stack trains its blocks and that the watch really watched the
watched ones: the watcher counted R x K optimizer steps, no more (it was off
during the bare blocks and the warm-up) and no fewer (it saw every step the
stack took, whoever called the optimizer).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

OVERHEAD = Path(__file__).resolve().parents[1] / "bench" / "overhead"
sys.path.insert(0, str(OVERHEAD))
import stacks  # noqa: E402

for needed in ("lightning", "peft", "accelerate", "sentence_transformers", "datasets"):
    pytest.importorskip(needed)

QUICK_K, QUICK_R = 3, 2  # what --quick sets


def test_quick_run_of_every_stack_watches_each_watched_step(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "stacks.md"
    assert stacks.main(["--quick", "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    rows = {}
    for line in out.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in stacks.STACKS:
            rows[cells[0]] = cells
    assert list(rows) == list(stacks.STACKS)
    for name, cells in rows.items():
        ratio = float(re.fullmatch(r"\*\*([0-9.]+)\*\*", cells[2]).group(1))
        cpu_ratio, bare, watched = float(cells[6]), float(cells[7]), float(cells[8])
        assert ratio > 0 and cpu_ratio > 0 and bare > 0 and watched > 0, (name, cells)
        assert int(cells[9]) == QUICK_R * QUICK_K, (name, cells)
        assert cells[11] != "n/a", (name, cells)  # the watch was stopped with a diagnosis


def test_unknown_stack_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        stacks.main(["--stacks", "plain,keras", "--no-write"])
    assert exc.value.code == 2 and "choose from plain" in capsys.readouterr().err
