"""``defib report`` and ``defib compare`` on real reports: two runs of the tiny BERT under ``defib run``.

The reports are made once for the module: a run with the shape-mismatch
fault (flatlined, L001) and a healthy run, each written by ``defib run --json
--html``, and the reports of ``defib check``, ``defib probe`` and ``defib
predict`` on a small CSV. ``defib report`` must print what the command printed
(each stage's report as what it is: rows checked, a probe, predictions of
rows, never a run that saw no step) and write the same HTML bytes; ``defib
compare`` must line the two runs up in the terminal and in one page that
headless Chromium opens without a request, a script or an undrawn plot (the
page test skips where chromium is absent, as tests/test_html_browser.py does).
Every bad input is one line on stderr and exit 2.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser import assert_clean, assert_plots_drawn, require_chromium, visit
from html_reports import IMG_PAYLOAD
from support import RunResult, run_defib, tiny_script

pytestmark = pytest.mark.timeout(300)
COMPARE_PLOTS = {"plot-compare-spread", "plot-compare-loss"}
EXECUTED = ("window.pwned === undefined", "document.querySelectorAll('script').length")


@dataclass
class Saved:
    """A command that wrote a report: its folder, the JSON and HTML it wrote, and what it printed."""

    dir: Path
    json: Path
    html: Path
    run: RunResult

    @property
    def report(self) -> dict:
        return json.loads(self.json.read_text(encoding="utf-8"))


def _run(tmp: Path, model: Path, *args: str) -> Saved:
    r = run_defib(tmp, "--html", str(tmp / "report.html"), command=tiny_script(model, *args))
    assert r.report is not None, r
    return Saved(tmp, tmp / "report.json", tmp / "report.html", r)


@pytest.fixture(scope="module")
def flatlined(tmp_path_factory, tiny_model_dir) -> Saved:
    saved = _run(tmp_path_factory.mktemp("flatlined"), tiny_model_dir, "--fault", "shape", "--steps", "40")
    assert saved.report["verdict"] == "flatlined" and saved.report["findings"][0]["code"] == "L001", saved.run
    return saved


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, tiny_model_dir) -> Saved:
    saved = _run(tmp_path_factory.mktemp("healthy"), tiny_model_dir)
    assert saved.report["verdict"] == "healthy", saved.run
    return saved


@pytest.fixture(scope="module")
def checked(tmp_path_factory, tiny_model_dir) -> Saved:
    """``defib check --json --html`` of a small CSV."""
    tmp = tmp_path_factory.mktemp("checked")
    rows = ["text,label"] + [f"{'good ' * (i % 4)}movie number {i},{i % 4}" for i in range(40)]
    (tmp / "data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    r = run_defib(tmp, "check", "data.csv", "--model", str(tiny_model_dir), "--no-progress",
                  "--json", str(tmp / "check.json"), "--html", str(tmp / "check.html"), command=None)
    assert r.returncode in (0, 1) and (tmp / "check.json").exists(), r
    return Saved(tmp, tmp / "check.json", tmp / "check.html", r)


def _scores_csv(path: Path) -> Path:
    rows = ["text,score"] + [f"{'good ' * (i % 4)}{'bad ' * (i % 3)}movie number {i},{i % 4 - i % 3 + 0.5}"
                             for i in range(40)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def probed(tmp_path_factory, tiny_model_dir) -> Saved:
    """``defib probe --json --html`` of a small regression CSV."""
    tmp = tmp_path_factory.mktemp("probed")
    r = run_defib(tmp, "probe", "--model", str(tiny_model_dir), "--data", str(_scores_csv(tmp / "data.csv")),
                  "--label", "score", "--json", str(tmp / "probe.json"), "--html", str(tmp / "probe.html"),
                  command=None)
    assert r.returncode in (0, 1) and (tmp / "probe.json").exists(), r
    return Saved(tmp, tmp / "probe.json", tmp / "probe.html", r)


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, tiny_model_dir) -> Saved:
    """``defib predict --json --html`` with a model from a short ``defib train`` (a few steps: any model will do)."""
    tmp = tmp_path_factory.mktemp("predicted")
    data = _scores_csv(tmp / "data.csv")
    r = run_defib(tmp, "train", str(data), "--label", "score", "--model", str(tiny_model_dir), "--out",
                  str(tmp / "model"), "--max-steps", "4", "--no-progress", command=None)
    assert r.returncode in (0, 1), r
    r = run_defib(tmp, "predict", str(tmp / "model"), str(data), "--out", str(tmp / "preds.csv"),
                  "--json", str(tmp / "predict.json"), "--html", str(tmp / "predict.html"), command=None)
    assert r.returncode in (0, 1) and (tmp / "predict.json").exists(), r
    return Saved(tmp, tmp / "predict.json", tmp / "predict.html", r)


def _defib(tmp: Path, *args: str) -> RunResult:
    return run_defib(tmp, *args, command=None)


# ------------------------------------------------------------------ defib report
@pytest.mark.parametrize("which, code", [("flatlined", 1), ("healthy", 0)])
def test_report_prints_and_writes_what_the_run_did(which, code, request, tmp_path):
    saved: Saved = request.getfixturevalue(which)
    r = _defib(tmp_path, "report", str(saved.json), "--html", str(tmp_path / "again.html"),
               "--json", str(tmp_path / "again.json"))
    assert r.returncode == code, r
    # defib run printed the script's own output, then the report: the report is the end of it, to the byte
    assert r.stdout.strip() and saved.run.stdout.endswith(r.stdout), (r.stdout, saved.run.stdout)
    assert (tmp_path / "again.html").read_bytes() == saved.html.read_bytes()
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == saved.report


def test_report_of_a_data_check(checked, tmp_path):
    r = _defib(tmp_path, "report", str(checked.json), "--html", str(tmp_path / "again.html"))
    assert r.returncode == checked.run.returncode, r
    assert r.stdout == checked.run.stdout
    assert (tmp_path / "again.html").read_bytes() == checked.html.read_bytes()


@pytest.mark.parametrize("which, what", [("checked", "40 rows checked"), ("probed", "probe of 40 rows"),
                                         ("predicted", "predictions of 40 rows")])
def test_report_of_each_stage_says_what_ran(which, what, request, tmp_path):
    """Not "INCONCLUSIVE (0 optimizer steps observed)": a check, a probe and a prediction have no steps to see."""
    saved: Saved = request.getfixturevalue(which)
    assert saved.report["verdict"] in ("healthy", "at_risk"), saved.report
    r = _defib(tmp_path, "report", str(saved.json), "--html", str(tmp_path / "again.html"))
    assert r.returncode == saved.run.returncode, r
    verdict = saved.report["verdict"].upper().replace("_", " ")
    assert f"{verdict}  ({saved.report['task']}, {what}" in r.stdout, r.stdout
    assert "optimizer steps" not in r.stdout and "No training step" not in r.stdout, r.stdout
    page = (tmp_path / "again.html").read_text(encoding="utf-8")
    assert page == saved.html.read_text(encoding="utf-8")
    assert "optimizer steps observed" not in page and "No training step" not in page


def test_report_of_a_prediction_run_shows_what_was_measured(predicted, tmp_path):
    section = predicted.report["predict"]
    assert section["rows"] == 40 and section["source"].endswith("data.csv") and section["model"].endswith("model")
    r = _defib(tmp_path, "report", str(predicted.json))
    assert "data.csv: predicted by" in r.stdout and "40 distinct inputs" in r.stdout, r.stdout
    page = predicted.html.read_text(encoding="utf-8")
    assert '<section id="predict"><h2>The predictions</h2>' in page and "Predictions of 40 rows" in page


# ------------------------------------------------------------------ defib compare
def test_compare_in_the_terminal(flatlined, healthy, tmp_path):
    r = _defib(tmp_path, "compare", str(flatlined.json), str(healthy.json))
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    step = flatlined.report["flatline"]["step"]
    verdict = next(line for line in lines if line.startswith("│ verdict"))
    assert f"FLATLINED at step {step}" in verdict and "HEALTHY" in verdict, verdict
    l001 = next(line for line in lines if line.startswith("│ L001"))
    assert "only A" in l001 and "error, step 1" in l001, l001
    # the curves: both runs at the first step, only the healthy one (B) past the flatlined run's last step
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in lines
            if line.startswith("│") and line.strip("│ ").split("│")[0].strip().isdigit()]
    last_a = flatlined.report["steps_observed"]
    assert rows[0][0] == "1" and "-" not in rows[0], rows
    past = [row for row in rows if int(row[0]) > last_a]
    assert past and all(row[1] == "-" and row[3] == "-" and row[2] != "-" and row[4] != "-" for row in past), rows
    spread_a = flatlined.report["signals"]["spread"]
    assert f"{spread_a['value'][0]:.3g}" == rows[0][1]


def test_compare_page_in_chromium(flatlined, healthy, tmp_path):
    require_chromium()
    before = tmp_path / f"{IMG_PAYLOAD}.json"  # the name is shown on the page: it must stay text
    shutil.copy(flatlined.json, before)
    page = tmp_path / "compare.html"
    r = _defib(tmp_path, "compare", before.name, str(healthy.json), "--html", str(page))
    assert r.returncode == 0, r
    v = visit(page, visible=("#verdict-a", "#verdict-b", "#diff-L001", "#finding-L001 .fix"), probes=EXECUTED)
    assert_clean(v)
    assert_plots_drawn(v, COMPARE_PLOTS)
    assert all(v.visible.values()), v.visible
    assert f"Flatlined at step {flatlined.report['flatline']['step']}" in v.text and "Healthy" in v.text
    assert f"A: {IMG_PAYLOAD}.json" in v.text
    assert flatlined.report["findings"][0]["message"] in v.text
    assert list(v.probes.values()) == [True, 0], v.probes


def test_compare_page_is_one_file_and_the_same_for_the_same_reports(flatlined, healthy, tmp_path):
    pages = []
    for name in ("one.html", "two.html"):
        r = _defib(tmp_path, "compare", str(flatlined.json), str(healthy.json), "--html", str(tmp_path / name))
        assert r.returncode == 0, r
        pages.append((tmp_path / name).read_text(encoding="utf-8"))
    assert pages[0] == pages[1]
    links = re.findall(r'(?:href|src)="([^"]*)"', pages[0])
    assert "<script" not in pages[0] and links and all(link.startswith("#") for link in links), links


# ------------------------------------------------------------------ bad inputs
def _bad_files(tmp: Path, run: dict, others: dict[str, Path]) -> dict[str, Path]:
    def put(name: str, content: object) -> Path:
        path = tmp / name
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return path

    no_signals = {k: v for k, v in run.items() if k != "signals"}
    no_spread = dict(run, signals={k: v for k, v in run["signals"].items() if k != "spread"})
    broken_series = dict(run, signals=dict(run["signals"], loss={"step": [1, 2], "value": [1.0]}))
    (tmp / "folder").mkdir()
    return {
        "missing": tmp / "nowhere.json",
        "folder": tmp / "folder",
        "not json": put("notes.json", "verdict: healthy\n"),
        "a list": put("list.json", [1, 2]),
        "no findings": put("other.json", {"name": "a package.json", "version": "1.0.0"}),
        "bad finding": put("badfinding.json", dict(run, findings=[{"message": "no code"}])),
        "bad confidence": put("badconfidence.json", dict(run, findings=[dict(run["findings"][0], confidence="high")])),
        "later version": put("later.json", dict(run, defib_version="99.0.0")),
        "not a version": put("noversion.json", dict(run, defib_version="latest")),
        **{f"{kind} report": path for kind, path in others.items()},
        "no signals": put("nosignals.json", no_signals),
        "no spread": put("nospread.json", no_spread),
        "broken series": put("broken.json", broken_series),
    }


REPORT_REFUSES = ("missing", "folder", "not json", "a list", "no findings", "bad finding", "bad confidence",
                  "later version", "not a version")
COMPARE_ONLY_REFUSES = ("check report", "probe report", "predict report", "no signals", "no spread", "broken series")
EXPECTED = {"missing": "no such report", "later version": "a later version than this defib",
            "check report": "a defib check report", "probe report": "a defib probe report",
            "predict report": "a defib predict report", "no signals": "no recorded series", "no spread": "no spread series",
            "not json": "not JSON", "no findings": "no findings", "bad finding": "finding 1 has no code",
            "bad confidence": "finding L001: confidence is a str"}


@pytest.mark.parametrize("case", REPORT_REFUSES + COMPARE_ONLY_REFUSES)
def test_a_bad_input_is_one_line_and_exit_2(case, flatlined, healthy, checked, probed, predicted, tmp_path):
    bad = _bad_files(tmp_path, flatlined.report, {"check": checked.json, "probe": probed.json,
                                                   "predict": predicted.json})[case]
    runs = [_defib(tmp_path, "compare", str(bad), str(healthy.json)),
            _defib(tmp_path, "compare", str(healthy.json), str(bad))]
    if case in REPORT_REFUSES:
        runs.append(_defib(tmp_path, "report", str(bad)))
    else:  # a report of any kind renders again: only compare needs a watched run's series
        assert _defib(tmp_path, "report", str(bad)).returncode in (0, 1)
    for r in runs:
        assert r.returncode == 2, r
        assert r.stdout == "" and "Traceback" not in r.stderr, r
        line = r.stderr.strip()
        assert "\n" not in line and line.startswith(f"defib: error: {bad}: ") and EXPECTED.get(case, "") in line, r


def test_an_unwritable_page_is_refused_before_reading(flatlined, healthy, tmp_path):
    r = _defib(tmp_path, "compare", str(flatlined.json), str(healthy.json), "--html", str(tmp_path / "no" / "x.html"))
    assert r.returncode == 2 and r.stdout == "" and "no folder" in r.stderr, r


@pytest.mark.parametrize("command", ["report", "compare"])
def test_help(command, tmp_path):
    r = _defib(tmp_path, command, "--help")
    assert r.returncode == 0 and "--html" in r.stdout, r
