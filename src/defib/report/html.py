"""The HTML report: one self-contained file with the verdict, the ranked findings and the plots.

It reads the same dict as the JSON report (the contract in docs/architecture.md), plus
what a command adds: ``signals`` (a watched run's recorded series, see
``defib.stages.run.export_signals``) and ``check`` (a data check's
histograms). Sections it has no data for are left out, so a probe or train
report renders from its findings alone.

Self-contained: the styles are inline, the plots are inline SVG, there is no
script, no font, nothing fetched; a Content-Security-Policy forbids any
request or script as a second line of defence. Everything that came from the
user (texts, labels, column names, paths, code lines, messages) is escaped
with ``html.escape`` at the one place it is written out (``_e``).

Size: bounded whatever the run's length. Each recorded series keeps at most
513 points and the heat map is a raster, so a report stays under
``SIZE_BOUND`` (1 MB; tests check a 100k-step run of a 12-layer model).
"""

from __future__ import annotations

import html
import math
import os
import re
from typing import Any

from defib.report.text import inconclusive_note, predict_lines, script_end
from defib.signals.run import TOKEN_TASK

SIZE_BOUND = 1_000_000  # bytes: the most a report of any run length may take (tested on 100k steps)
MAX_VALUE_CHARS = 400    # an evidence value longer than this is cut (the JSON report has it whole)
MAX_LIST_ITEMS = 12      # items of an evidence list shown before "... (N more)"

VERDICT_TEXT = {"healthy": "Healthy", "flatlined": "Flatlined", "at_risk": "At risk", "inconclusive": "Inconclusive"}
VERDICT_NOTE = {
    "healthy": "The predictions vary with the input and no root cause was found.",
    "flatlined": "The predictions collapsed to (nearly) one value for every input.",
    "at_risk": "A root cause of flatlining is present; the collapse has not (yet) shown.",
    "inconclusive": "No training step with predictions was observed, so nothing can be said about a collapse.",
}
PREDICT_AT_RISK = "A finding below says these predictions cannot be taken as they are."

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 980px;
       padding: 1.2rem; color: #1b1b1b; line-height: 1.45; }
h1 { margin: 0; font-size: 1.7rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9em; }
pre { background: #f5f5f5; padding: .6rem .8rem; border-radius: 4px; overflow-x: auto; white-space: pre-wrap; }
.banner { border-radius: 6px; padding: 1rem 1.2rem; color: #fff; }
.verdict-healthy { background: #2e7d32; } .verdict-flatlined { background: #c62828; }
.verdict-at_risk { background: #ef6c00; } .verdict-inconclusive { background: #455a64; }
.banner p { margin: .3rem 0 0; } .banner code { background: rgba(255,255,255,.18); padding: 0 .25rem; }
.finding { border: 1px solid #ddd; border-left: 6px solid #999; border-radius: 4px; padding: .6rem 1rem;
           margin: 1rem 0; }
.sev-error { border-left-color: #c62828; } .sev-warning { border-left-color: #ef6c00; }
.sev-info { border-left-color: #1565c0; }
.finding h3 { margin: .2rem 0 .4rem; }
.badge { display: inline-block; font-size: .8rem; padding: 0 .45rem; border-radius: 3px; background: #eee;
         margin-right: .3rem; }
.badge.error { background: #ffcdd2; } .badge.warning { background: #ffe0b2; } .badge.info { background: #bbdefb; }
table { border-collapse: collapse; margin: .4rem 0; }
td, th { border: 1px solid #ddd; padding: .15rem .5rem; text-align: left; vertical-align: top; font-size: .9rem; }
th { background: #fafafa; }
figure.plot { margin: 1.2rem 0; }
figure.plot svg { width: 100%; max-width: 900px; height: auto; display: block; }
figcaption h3 { margin: 0; } figcaption p { margin: .1rem 0 .4rem; color: #555; }
.plot-error { color: #c62828; }
details { margin: .5rem 0; } summary { cursor: pointer; color: #1565c0; }
footer { margin-top: 2rem; color: #777; font-size: .85rem; }
"""


def _e(value: Any) -> str:
    """Escape anything for HTML text or a quoted attribute: the only way user data reaches the page."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, float):
        return "n/a" if not math.isfinite(x) else f"{x:.4g}"
    return str(x)


def _value(v: Any) -> str:
    """An evidence value as short text: numbers rounded, long lists cut (escaped by the caller)."""
    if isinstance(v, (list, tuple)):
        shown = [_value(x) for x in v[:MAX_LIST_ITEMS]]
        more = f", ... ({len(v) - MAX_LIST_ITEMS} more)" if len(v) > MAX_LIST_ITEMS else ""
        text = "[" + ", ".join(shown) + more + "]"
    elif isinstance(v, dict):
        text = "{" + ", ".join(f"{k}: {_value(x)}" for k, x in list(v.items())[:MAX_LIST_ITEMS]) + \
               (f", ... ({len(v) - MAX_LIST_ITEMS} more)" if len(v) > MAX_LIST_ITEMS else "") + "}"
    elif v is None:
        text = "n/a"
    else:
        text = _num(v)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "…"


# ------------------------------------------------------------------ banner
def _banner(report: dict[str, Any]) -> str:
    verdict = report.get("verdict") or "inconclusive"
    flat = report.get("flatline") or {}
    head = VERDICT_TEXT.get(verdict, verdict)
    if verdict == "flatlined" and flat.get("step") is not None:
        head += f" at step {_num(flat['step'])}"
    ended_early = (report.get("observed") or {}).get("verdict_so_far")  # healthy steps, then a crash or a kill
    note = PREDICT_AT_RISK if verdict == "at_risk" and "predict" in report else VERDICT_NOTE.get(verdict, "")
    lines = [inconclusive_note(report) if ended_early else note]
    task = report.get("task") or "unknown"
    if "check" in report:
        rows = (report.get("check") or {}).get("rows")
        lines.append(f"Data check: {_num(rows)} rows, task {task}.")
    elif report.get("probe"):
        probe = report["probe"]
        lines.append(f"Probe of {_num(probe.get('rows'))} rows from {probe.get('source')}, task {task}.")
    elif "predict" in report:
        rows = (report.get("predict") or {}).get("rows")
        lines.append(f"Predictions of {_num(rows)} rows, task {task} (defib predict).")
    else:
        lines.append(f"Task {task}, {_num(report.get('steps_observed', 0))} optimizer steps observed.")
    if flat:
        lines.append(f"Prediction spread {_num(flat.get('pred_std'))} against target spread "
                     f"{_num(flat.get('target_std'))}; loss {_num(flat.get('loss'))} against the constant-predictor "
                     f"loss {_num(flat.get('baseline_loss'))}.")
    if report.get("stopped_after_steps"):
        lines.append(f"defib stopped the script after {_num(report['stopped_after_steps'])} steps (--max-steps).")
    end = script_end(report)
    if end:
        lines.append(end[0].upper() + end[1:] + ".")
    body = "".join(f"<p>{_e(line)}</p>" for line in lines if line)
    if report.get("command"):
        command = " ".join(str(c) for c in report["command"])
        body += f"<p>Command: <code>{_e(command)}</code></p>"
    return f'<header class="banner verdict-{_e(verdict)}" id="verdict"><h1>{_e(head)}</h1>{body}</header>'


# ------------------------------------------------------------------ findings
def _rule_doc(code: str) -> str:
    """The rule's explanation, from its docstring (the single source), as a collapsed section."""
    from defib.rules.base import SECTIONS, all_rules

    cls = all_rules().get(code)
    if cls is None:
        return ""
    doc = cls.doc()
    parts = [f"<p>{_inline(doc['summary'])}</p>"] if doc.get("summary") else []
    for section in SECTIONS:
        text = doc.get(section)
        if not text:
            continue
        if section == "Example":
            parts.append(f"<h4>{_e(section)}</h4><pre>{_e(text)}</pre>")
        else:
            paras = "".join(f"<p>{_inline(p)}</p>" for p in re.split(r"\n\s*\n", text) if p.strip())
            parts.append(f"<h4>{_e(section)}</h4>{paras}")
    return f"<details class=\"rule-doc\"><summary>About {_e(code)}: {_e(cls.title)}</summary>{''.join(parts)}</details>"


def _inline(text: str) -> str:
    """Escape a docstring paragraph, then show ``code`` spans as code (backticks survive escaping)."""
    return re.sub(r"``?([^`]+)``?", r"<code>\1</code>", _e(" ".join(text.split())))


def _finding(i: int, f: dict[str, Any]) -> str:
    sev = str(f.get("severity") or "info")
    code = str(f.get("code") or "?")
    title = f.get("title") or f.get("cause") or "symptom"
    badges = [f'<span class="badge {_e(sev)}">{_e(sev)}</span>',
              f'<span class="badge">cause: {_e(f.get("cause") or "symptom")}</span>']
    if f.get("confidence") is not None:
        badges.append(f'<span class="badge">confidence {_e(_num(f["confidence"]))}</span>')
    if f.get("step") is not None:
        badges.append(f'<span class="badge">first seen at step {_e(_num(f["step"]))}</span>')
    parts = [f"<h3>{i}. [{_e(code)}] {_e(title)}</h3><div>{''.join(badges)}</div>",
             f'<p class="message">{_e(f.get("message", ""))}</p>']
    where = f.get("where")
    if where and not isinstance(where, dict):  # another command's finding may name a place as plain text
        parts.append(f'<p class="where">At <code>{_e(where)}</code></p>')
    elif where:
        parts.append(f'<p class="where">At <code>{_e(where.get("file"))}:{_e(where.get("line"))}</code></p>'
                     f'<pre class="where-code"><code>{_e(where.get("code", ""))}</code></pre>')
    evidence = f.get("evidence") or {}
    if not isinstance(evidence, dict):
        evidence = {"evidence": evidence}
    if evidence:
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_value(v))}</td></tr>" for k, v in evidence.items())
        parts.append(f'<table class="evidence"><caption>Evidence</caption>{rows}</table>')
    if f.get("fix"):
        parts.append(f'<p>Fix:</p><pre class="fix"><code>{_e(f["fix"])}</code></pre>')
    if f.get("symptoms"):
        parts.append(f"<p>Explains: {_e(', '.join(map(str, f['symptoms'])))}</p>")
    parts.append(_rule_doc(code))
    return f'<article class="finding sev-{_e(sev)}" id="finding-{_e(code)}">{"".join(parts)}</article>'


def _findings(report: dict[str, Any]) -> str:
    findings = report.get("findings") or []
    if not findings:
        note = "No findings." if report.get("verdict") != "inconclusive" else inconclusive_note(report)
        return f'<section id="findings"><h2>Findings</h2><p>{_e(note)}</p></section>'
    items = "".join(_finding(i, f) for i, f in enumerate(findings, 1))
    return (f'<section id="findings"><h2>Findings, most likely root cause first</h2>{items}'
            "<p>Silence a finding with <code>--ignore CODE</code>; "
            "<code>defib rule CODE</code> prints its explanation.</p></section>")


def _confirmed(report: dict[str, Any]) -> str:
    fixes = report.get("confirmed_fixes") or []
    if not fixes:
        return ""
    blocks = []
    for c in fixes:
        before, after = c.get("before") or {}, c.get("after") or {}
        keys = list(dict.fromkeys([*before, *after]))
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_value(before.get(k)))}</td><td>{_e(_value(after.get(k)))}</td></tr>"
                       for k in keys)
        state = "confirmed: the collapse went away" if c.get("recovered") else "did not help"
        blocks.append(f'<div class="confirmed"><h3>{_e(c.get("cause") or "fix")}: {_e(state)}</h3>'
                      f'<pre class="fix"><code>{_e(c.get("fix", ""))}</code></pre>'
                      f"<table><tr><th>measure</th><th>before</th><th>after</th></tr>{rows}</table></div>")
    return f'<section id="confirmed"><h2>Fixes tried</h2>{"".join(blocks)}</section>'


# ------------------------------------------------------------------ plots and the rest
def _plots(report: dict[str, Any]) -> str:
    from defib.report import plots

    drawn = plots.draw(report)
    if not drawn:
        return ""
    figures = []
    for p in drawn:
        caption = f"<figcaption><h3>{_e(p.title)}</h3><p>{_e(p.caption)}</p></figcaption>"
        if p.svg is not None:
            figures.append(f'<figure class="plot" id="plot-{_e(p.id)}">{caption}{p.svg}</figure>')
        else:
            figures.append(f'<figure class="plot-error" id="plot-{_e(p.id)}">{caption}'
                           f"<p>Could not draw this plot: {_e(p.error)}</p></figure>")
    return f'<section id="plots"><h2>Plots</h2>{"".join(figures)}</section>'


def _check_summary(report: dict[str, Any]) -> str:
    check = report.get("check")
    if not check:
        return ""
    rows = [("rows", check.get("rows")),
            ("task", f"{check.get('task')}" + (" (inferred from the labels)" if check.get("task_inferred") else "")),
            ("max_length", check.get("max_length"))]
    labels = check.get("labels") or {}
    if labels.get("kind") == "regression":
        rows += [("target mean", labels.get("mean")), ("target std", labels.get("std"))]
    elif labels.get("kind") in ("classification", TOKEN_TASK):
        counts = labels.get("counts") or {}
        rows.append(("tag counts (tokens)" if labels.get("kind") == TOKEN_TASK else "label counts", counts))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_value(v))}</td></tr>" for k, v in rows if v is not None)
    return f'<section id="check"><h2>The data</h2><table>{body}</table></section>'


def _predict_summary(report: dict[str, Any]) -> str:
    predict = report.get("predict")
    if not predict:
        return ""
    items = "".join(f"<li>{_e(line)}</li>" for line in predict_lines(predict))
    return f'<section id="predict"><h2>The predictions</h2><ul>{items}</ul></section>'


def _skipped(report: dict[str, Any]) -> str:
    skipped = report.get("skipped_rules") or {}
    if not skipped:
        return ""
    items = "".join(f"<li><code>{_e(code)}</code>: not observed: {_e(', '.join(map(str, need)))}</li>"
                    for code, need in skipped.items())
    return (f"<details id=\"skipped\"><summary>{len(skipped)} rule(s) could not look "
            f"(their signals were not observed)</summary><ul>{items}</ul></details>")


def _sections(report: dict[str, Any]) -> str:
    return "".join([_banner(report), _findings(report), _confirmed(report), _check_summary(report),
                    _predict_summary(report), _plots(report), _skipped(report)])


def render_html(report: dict[str, Any]) -> str:
    """The whole page for one report dict (the JSON contract, plus ``signals`` / ``check`` when present)."""
    verdict = report.get("verdict") or "inconclusive"
    title = f"defib: {VERDICT_TEXT.get(verdict, verdict)}"
    body = _sections(report)
    footer = (f"<footer>defib {_e(report.get('defib_version', ''))}. This file is self-contained: "
              "it loads nothing from the network. The same diagnosis as JSON: <code>--json PATH</code>.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head>"
            f"<body>{body}{footer}</body></html>\n")


FRAGMENT_CLASS = "defib-report"


def render_fragment(report: dict[str, Any]) -> str:
    """The same sections as a block to embed in someone else's page (a notebook's cell output).

    The notebook owns the page, so the styles are scoped to the block
    (``.defib-report h2``, not ``h2``): nothing outside it changes look.
    """
    css = CSS + "body { background: #fff; }"  # readable under a dark notebook theme too
    return (f'<div class="{FRAGMENT_CLASS}"><style>{_scoped(css, "." + FRAGMENT_CLASS)}</style>'
            f"{_sections(report)}</div>")


def _scoped(css: str, scope: str) -> str:
    """Each rule's selectors put under ``scope``; ``body`` becomes the scope itself."""
    def one(selector: str) -> str:
        selector = selector.strip()
        return scope if selector == "body" else f"{scope} {selector}"

    rules = re.findall(r"([^{}]+)\{([^{}]*)\}", css)
    return " ".join(f"{', '.join(one(s) for s in selectors.split(','))} {{{body}}}" for selectors, body in rules)


def write_html(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Render and write the page atomically (a reader never sees half of it)."""
    from defib.report.json import write_atomic

    write_atomic(render_html(report), path)
