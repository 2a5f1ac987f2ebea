"""`defib run -- python script.py` end to end, and the small CLI commands, as a user runs them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from support import SCRIPTS, tiny_script

from defib.rules.base import SECTIONS, all_rules


def _line_of(path: Path, text: str) -> int:
    """1-based line number of the only line of ``path`` that contains ``text``."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(hits) == 1, (text, hits)
    return hits[0]


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


def test_healthy_script_is_healthy_and_its_output_passes_through(tiny_model_dir, defib_run):
    r = defib_run(command=tiny_script(tiny_model_dir))
    rep = r.report
    assert re.search(r"^final loss \d+\.\d{4}$", r.stdout, re.M), r  # the script's own stdout
    assert rep["task"] == "regression"
    assert rep["steps_observed"] == 60
    assert rep["script_exit"] == 0
    alarms = [f for f in rep["findings"] if f["severity"] != "info"]
    assert not alarms, [(f["code"], f["message"]) for f in alarms]
    assert rep["verdict"] == "healthy"
    assert r.returncode == 0, r
    assert "HEALTHY" in r.stdout


def test_shape_fault_is_flatlined_with_l001_at_the_loss_line(tiny_model_dir, defib_run):
    script = SCRIPTS / "tiny_regression.py"
    r = defib_run(command=tiny_script(tiny_model_dir, "--fault", "shape"))
    assert r.returncode == 1, r
    rep = r.report
    assert rep["verdict"] == "flatlined"
    assert rep["flatline"] is not None and rep["flatline"]["pred_std"] < rep["flatline"]["target_std"]
    top = rep["findings"][0]
    assert top["code"] == "L001", [f["code"] for f in rep["findings"]]
    assert top["cause"] == "loss.shape_mismatch"
    assert top["where"] is not None
    assert Path(top["where"]["file"]).name == script.name
    assert top["where"]["line"] == _line_of(script, "loss = F.mse_loss(pred, y)")
    assert top["where"]["code"] == "loss = F.mse_loss(pred, y)"
    assert rep["script_exit"] == 0


def test_ignored_rules_do_not_decide_the_verdict(tiny_model_dir, defib_run):
    """--ignore applies before the verdict: an ignored S001 flatline neither flatlines the run nor is announced."""
    r = defib_run("--ignore", "S001", "--ignore", "l001", command=tiny_script(tiny_model_dir, "--fault", "shape"))
    codes = [f["code"] for f in r.report["findings"]]
    assert "S001" not in codes and "L001" not in codes, codes
    assert r.report["verdict"] != "flatlined" and r.report["flatline"] is None, r.report["verdict"]
    assert "predictions flatlined" not in r.stderr, r


def test_a_flatline_that_recovers_is_announced_both_ways(tiny_model_dir, defib_run):
    # the broadcasting loss pulls the predictions flat early; the tiny model later spreads them out again
    r = defib_run(command=tiny_script(tiny_model_dir, "--fault", "shape", "--steps", "120"))
    flat = r.stderr.find("predictions flatlined at step")
    assert flat >= 0, r
    if r.report["verdict"] != "flatlined":
        assert r.stderr.find("predictions recovered by step") > flat, r
        assert r.report["flatline"] is None
    else:
        assert "recovered" not in r.stderr, r


def test_steps_option_stops_the_script(tiny_model_dir, defib_run):
    r = defib_run("--steps", "5", command=tiny_script(tiny_model_dir))
    rep = r.report
    assert rep is not None, r
    assert rep["steps_observed"] == 5
    assert rep["stopped_after_steps"] == 5
    assert rep["script_exit"] == 0
    assert "final loss" not in r.stdout  # the script never reached its end
    assert "after 5 optimizer steps" in r.stderr
    _no_traceback(r.stderr)


def test_crashing_script_still_gets_a_report(tiny_model_dir, defib_run):
    r = defib_run(command=tiny_script(tiny_model_dir, "--crash-after", "4"))
    assert "Traceback" in r.stderr and "RuntimeError: planted crash after step 4" in r.stderr, r
    rep = r.report
    assert rep is not None, r
    assert rep["script_exit"] not in (0, None)
    assert r.returncode != 0
    assert rep["steps_observed"] == 4
    assert rep["task"] == "regression"
    assert rep["verdict"] in ("inconclusive", "at_risk", "flatlined")  # a crash is never healthy


def test_script_killed_by_a_signal_fails_the_run_and_says_so(defib_run):
    """SIGKILL (the OOM killer's) leaves no exit handler to write a report: exit 128 + 9, and a note saying why."""
    r = defib_run(command=[sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    assert r.returncode == 128 + 9, r
    assert r.report["script_exit"] == -9
    assert r.report["verdict"] == "inconclusive"
    assert "SIGKILL" in r.report["observed"]["note"], r.report["observed"]
    _no_traceback(r.stderr)


def test_script_that_never_trains_is_inconclusive(defib_run):
    r = defib_run(command=[sys.executable, str(SCRIPTS / "no_train.py")])
    assert r.returncode == 0, r
    assert "no training here, just 3 ones" in r.stdout
    rep = r.report
    assert rep["verdict"] == "inconclusive"
    assert rep["steps_observed"] == 0
    assert rep["script_exit"] == 0
    assert rep.get("observed"), rep  # says what it saw (nothing), not just "inconclusive"
    assert "INCONCLUSIVE" in r.stdout.upper()


@pytest.mark.parametrize("args", [
    ["run", "--bogus", "--", "python", "x.py"],
    ["run", "--", "python", "no_such_script.py"],
    ["run"],
    ["run", "--"],
], ids=["unknown-option", "missing-script", "no-command", "empty-command"])
def test_usage_errors_are_one_line_exit_2(args, defib_run):
    r = defib_run(*args)
    assert r.returncode == 2, r
    _no_traceback(r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r
    assert lines[0].startswith("defib: error:"), r
    assert r.report is None


def test_rules_lists_every_registered_rule(defib_run):
    r = defib_run("rules")
    assert r.returncode == 0, r
    codes = re.findall(r"\b[DLOMESX]\d{3}\b", r.stdout)
    assert set(codes) == set(all_rules()), r.stdout


def test_rule_prints_its_sections(defib_run):
    r = defib_run("rule", "L001")
    assert r.returncode == 0, r
    assert "L001" in r.stdout
    for section in SECTIONS:
        assert section in r.stdout, section
    assert "loss.shape_mismatch" in r.stdout
    assert defib_run("rule", "l001").returncode == 0  # codes are case-insensitive


def test_rules_says_which_command_emits_each_rule(defib_run):
    r = defib_run("rules")
    for code, cls in all_rules().items():
        line = next(line for line in r.stdout.splitlines() if code in line)
        assert f"defib {cls.stage}" in line, line


def test_rule_explains_a_cause_and_the_internal_error_code(defib_run):
    r = defib_run("rule", "data.truncation")
    assert r.returncode == 0, r
    naming = [code for code, cls in all_rules().items() if cls.cause == "data.truncation"]
    assert len(naming) >= 2 and all(code in r.stdout for code in naming), (naming, r.stdout)
    r = defib_run("rule", "x001")
    assert r.returncode == 0, r
    assert "internal error" in r.stdout and "--ignore X001" in r.stdout


def test_unknown_rule_exits_2(defib_run):
    r = defib_run("rule", "ZZZ")
    assert r.returncode == 2, r
    _no_traceback(r.stderr)
    assert "ZZZ" in r.stderr and len(r.stderr.strip().splitlines()) == 1
