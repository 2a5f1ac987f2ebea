"""HTML reports opened in headless Chromium, as a person would open them from disk.

Three real reports (a flatlined run and a healthy run written by ``defib run
--html`` on the tiny BERT, a classification run watched in-process) and a data
check built by hand. Each is checked for: no console error, no request but the
file itself, every plot present and drawn (its screenshot is not one colour),
the verdict and findings visible. The flatlined run's script has an
``<img onerror>`` payload as its file name, so the path, the command and the
``where`` lines carry it into the report; the hand-built payload report puts
``<script>`` and ``<img onerror>`` in labels, messages, evidence and fixes.
"""

from __future__ import annotations

import shutil

import pytest
from browser import assert_clean, assert_plots_drawn, require_chromium, visit
from defib.report.html import write_html
from html_reports import IMG_PAYLOAD, PAYLOADS, check_report, classification_run, payload_report
from support import SCRIPTS, run_defib, tiny_script

RUN_PLOTS = {f"plot-{p}" for p in ("predictions", "final-distribution", "loss", "spread", "grad-norm", "lr-update")}
CHECK_PLOTS = {"plot-token-lengths", "plot-labels"}
EXECUTED = ("window.pwned === undefined", "document.querySelectorAll('script').length",
            "document.querySelectorAll('img, iframe, object, embed').length")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", autouse=True)
def chromium():
    require_chromium()


@pytest.fixture(scope="module")
def flatlined(tmp_path_factory, tiny_model_dir):
    """``defib run --html`` on the shape-mismatch fault, from a script whose name is an <img onerror> payload."""
    tmp = tmp_path_factory.mktemp("flatlined")
    script = tmp / f"{IMG_PAYLOAD}.py"
    shutil.copy(SCRIPTS / "tiny_regression.py", script)
    command = tiny_script(tiny_model_dir, "--fault", "shape", "--steps", "40")
    command[1] = script.name  # relative, run from tmp: the report's `where` names it as the user typed it
    r = run_defib(tmp, "--html", str(tmp / "report.html"), command=command)
    assert r.report is not None and r.report["verdict"] == "flatlined", r
    return tmp / "report.html", r.report


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("healthy")
    r = run_defib(tmp, "--html", str(tmp / "report.html"), command=tiny_script(tiny_model_dir))
    assert r.report is not None and r.report["verdict"] == "healthy", r
    return tmp / "report.html", r.report


def test_flatlined_run_report(flatlined):
    path, report = flatlined
    v = visit(path, visible=("#verdict", "#finding-L001 .message", "#finding-L001 .fix"), probes=EXECUTED)
    assert_clean(v)
    assert_plots_drawn(v, RUN_PLOTS)
    assert f"Flatlined at step {report['flatline']['step']}" in v.text
    assert all(v.visible.values()), v.visible
    assert report["findings"][0]["message"] in v.text
    # the payload in the script's name is shown as text and did nothing
    assert IMG_PAYLOAD in v.text
    assert list(v.probes.values()) == [True, 0, 0], v.probes


def test_healthy_run_report(healthy):
    path, _ = healthy
    v = visit(path, visible=("#verdict",))
    assert_clean(v)
    assert_plots_drawn(v, RUN_PLOTS)
    assert v.text.startswith("Healthy")
    assert v.visible == {"#verdict": True}


def test_classification_run_report(tmp_path):
    w = classification_run(steps=40)
    w.write_html(tmp_path / "report.html")
    v = visit(tmp_path / "report.html")
    assert_clean(v)
    assert_plots_drawn(v, RUN_PLOTS)
    assert "Predicted class against label" in v.text or "class 0" in v.text


def test_data_check_report(tmp_path):
    write_html(check_report(), tmp_path / "check.html")
    v = visit(tmp_path / "check.html", visible=("#verdict", "#finding-D001 .message", "#check"))
    assert_clean(v)
    assert_plots_drawn(v, CHECK_PLOTS)
    assert all(v.visible.values()), v.visible
    assert "22% of rows are cut at max_length 32." in v.text


def test_payloads_in_user_data_do_not_execute(tmp_path):
    write_html(payload_report(), tmp_path / "payload.html")
    v = visit(tmp_path / "payload.html", probes=EXECUTED)
    assert_clean(v)
    assert_plots_drawn(v, CHECK_PLOTS)
    assert list(v.probes.values()) == [True, 0, 0], v.probes
    for payload in PAYLOADS:  # shown to the reader, as text
        assert payload in v.text
