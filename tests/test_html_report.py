"""The HTML report as text: sections, rule explanations, escaping, the size bound, and the series it plots.

What a browser makes of it is tested in test_html_browser.py.
"""

from __future__ import annotations

import html
import re

from defib.stages.run import export_signals
from defib.report.html import SIZE_BOUND, render_fragment, render_html, write_html
from defib.rules.base import all_rules
from html_reports import GROUPS, PAYLOADS, check_report, classification_run, finding, long_run_signals, payload_report

RUN_PLOTS = {"predictions", "final-distribution", "loss", "spread", "grad-norm", "lr-update"}


def plot_ids(page: str) -> set[str]:
    return set(re.findall(r'<figure class="plot" id="plot-([\w-]+)">', page))


def test_check_report_draws_token_lengths_with_max_length_and_labels():
    page = render_html(check_report())
    assert plot_ids(page) == {"token-lengths", "labels"}
    assert "max_length 32" in page            # the line's legend entry, as SVG text
    assert ">fresh<" in page and ">rotten<" in page  # the label bars' tick labels
    assert "13905" in page


def test_check_report_regression_labels_show_mean_and_std():
    labels = {"kind": "regression", "bin_edges": [0, 1, 2, 3, 4, 5], "counts": [10, 30, 50, 30, 10],
              "mean": 2.5, "std": 1.1}
    page = render_html(check_report(labels=labels))
    assert plot_ids(page) == {"token-lengths", "labels"}
    assert "mean 2.5" in page and "std (1.1)" in page


def test_findings_of_any_command_render_generically():
    """A probe or train report: findings only, an unknown rule code, no series: no plots, no crash."""
    report = {"verdict": "at_risk", "task": "regression", "findings": [finding(code="P900", where={
        "file": "train.py", "line": 12, "code": "model.eval()"})]}
    page = render_html(report)
    assert "[P900]" in page and "train.py:12" in page and "model.eval()" in page
    assert 'id="plots"' not in page
    assert "example_lengths" in page and "(28 more)" in page  # a long evidence list is cut


def test_probe_report_draws_the_lr_range_curve_and_gradient_flow():
    probe = {"user_lr": 1e-3, "lr_range": {"lrs": [1e-7, 1e-6, 1e-5, 1e-4, 1e-3], "losses": [1.0, 0.98, 0.7, 0.5, 9.0],
                                           "suggested_lr": 1e-5, "min_loss_lr": 1e-4, "diverged_lr": 1e-3,
                                           "optimizer": "AdamW"},
             "grad_norms": {"embeddings": 0.0, "layer.0": 0.2, "head": 1.5}}
    page = render_html({"verdict": "at_risk", "task": "regression", "probe": probe, "findings": []})
    assert plot_ids(page) == {"lr-range", "probe-grad-norm"}
    assert "suggested 1e-05" in page and "your learning rate 0.001" in page and ">embeddings<" in page
    assert ">no gradient<" in page  # the embeddings group had none
    no_curve = render_html({"verdict": "healthy", "probe": {"lr_range": None, "grad_norms": None}, "findings": []})
    assert 'id="plots"' not in no_curve


def test_findings_of_unexpected_shapes_still_render():
    odd = [{"code": "T001", "message": "no severity, evidence as a list", "evidence": [1.5, 2],
            "where": "train.py, line 3"}, {"message": "no code at all", "severity": None, "confidence": None}]
    page = render_html({"findings": odd})
    assert "[T001]" in page and "[1.5, 2]" in page and "train.py, line 3" in page and "no code at all" in page


def test_rule_explanation_comes_from_the_docstring():
    doc = all_rules()["L001"].doc()
    page = render_html({"verdict": "at_risk", "findings": [finding(code="L001")]})
    first_words = " ".join(doc["Why it flattens predictions"].split()[:8])
    assert html.escape(first_words) in page
    assert "<h4>Example</h4><pre>" in page


def test_confirmed_fix_shows_before_and_after():
    report = {"verdict": "healthy", "findings": [], "confirmed_fixes": [
        {"cause": "loss.shape_mismatch", "fix": "pred.squeeze(-1)", "recovered": True,
         "before": {"pred_std": 0.003}, "after": {"pred_std": 0.92}}]}
    page = render_html(report)
    assert "confirmed: the collapse went away" in page
    assert "<th>pred_std</th><td>0.003</td><td>0.92</td>" in page


def test_user_text_is_escaped_everywhere():
    page = render_html(payload_report())
    for payload in PAYLOADS:
        assert payload not in page
        assert html.escape(payload) in page
    assert "<script" not in page.lower() and "<img" not in page.lower()


def test_user_text_is_escaped_in_a_notebooks_output_too():
    """The block a notebook shows under a cell (``Diagnosis._repr_html_``) is the same sections, escaped the same."""
    block = render_fragment(payload_report())
    for payload in PAYLOADS:
        assert payload not in block
        assert html.escape(payload) in block
    assert "<script" not in block.lower() and "<img" not in block.lower()


def test_100k_step_report_stays_under_the_size_bound(tmp_path):
    """Every series is downsampled (Series caps), so the page does not grow with the run."""
    sig = export_signals(long_run_signals(100_000))
    assert max(len(s["step"]) for s in sig["grad_norm"].values()) <= 513
    assert list(sig["grad_norm"]) == GROUPS  # model order: the heat map's rows
    report = {"defib_version": "0.1.0", "verdict": "healthy", "task": "regression", "steps_observed": 100_000,
              "findings": [finding()], "signals": sig}
    write_html(report, tmp_path / "long.html")
    page = (tmp_path / "long.html").read_text(encoding="utf-8")
    assert plot_ids(page) == RUN_PLOTS
    assert len(page.encode()) < SIZE_BOUND, len(page.encode())


def test_watcher_records_class_shares_and_final_counts_for_classification():
    w = classification_run(steps=30)
    sig = export_signals(w.watcher.s)
    assert set(sig["class_share"]) <= {"0", "1", "2"} and sig["class_share"]
    sampled = [1, 2, 10, 20, 30]
    for name, series in sig["class_share"].items():  # a class has a share (0 if unpredicted) from when first seen
        assert series["step"] == sampled[-len(series["step"]):], (name, series)
    final = sig["final"]
    assert final["kind"] == "classification" and final["classes"] == ["0", "1", "2"]
    assert sum(final["label_counts"]) == 30 * 16


def test_run_html_refuses_a_directory(defib_run, tmp_path):
    r = defib_run("run", "--html", str(tmp_path), "--", "python", "-c", "pass")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("defib: error: report path is a directory") and "Traceback" not in r.stderr
