"""The comparison of two runs as one self-contained HTML page (``defib compare A.json B.json --html OUT``).

The same rules as the one-run page (``report/html.py``), whose pieces it
reuses: inline styles, inline SVG plots from matplotlib, no script, nothing
fetched (the same Content-Security-Policy), and every string from a report
escaped by ``html._e``. Each run's findings are drawn by the one-run page's
``_finding``, so a finding reads the same on both pages.
"""

from __future__ import annotations

import math
import os
from typing import Any

from defib._version import __version__
from defib.report import plots
from defib.report.compare import Comparison, Side, at_step, last
from defib.report.html import CSP, CSS, VERDICT_TEXT, _e, _finding, _num
from defib.rules.thresholds import FLAT_SPREAD

COLOURS = {"A": "#ff7f0e", "B": "#1f77b4"}

PAIR_CSS = """
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.pair > div { min-width: 0; }
.banner h2 { margin: 0; border: 0; font-size: 1.2rem; color: #fff; }
td.only-a, td.only-b { font-weight: bold; }
"""


def _side_label(key: str, side: Side) -> str:
    return f"{key}: {side.name}"


def _value(x: float | None) -> str:
    return "-" if x is None else _num(x)


# ------------------------------------------------------------------ plots
def spread_plot(c: Comparison):
    """Both runs' prediction spread (relative to the targets') over the steps, with the line below which it is flat."""
    fig, (ax,) = plots._figure(height=3.0)
    for key, side in (("A", c.a), ("B", c.b)):
        values = side.spread()
        ax.plot(list(values), [math.nan if v is None else v for v in values.values()], color=COLOURS[key],
                linewidth=1.5, label=plots._short(_side_label(key, side)))
        step = (side.report.get("flatline") or {}).get("step")
        if step is not None:
            ax.axvline(step, color=COLOURS[key], linestyle=":", linewidth=1.2, label=f"{key} flatlined (step {step})")
    ax.axhline(FLAT_SPREAD, color=plots.BASELINE_COLOUR, linestyle="--", linewidth=1, label=f"flat below {FLAT_SPREAD}")
    ax.set(title="Prediction spread against target spread", xlabel="optimizer step",
           ylabel="prediction spread / target spread")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return fig


def loss_plot(c: Comparison):
    """Both runs' loss (running mean) as solid lines, each with its constant-predictor loss dashed in its colour."""
    from defib.report.saved import series

    fig, (ax,) = plots._figure()
    drawn: list[float] = []
    for key, side in (("A", c.a), ("B", c.b)):
        for name, style, what in (("loss", "-", "loss"), ("baseline", "--", "constant-predictor loss")):
            steps, values = series(side.report, name)
            ys = [math.nan if v is None else v for v in values]
            drawn += ys
            ax.plot(steps, ys, color=COLOURS[key], linestyle=style, linewidth=1.5 if style == "-" else 1.1,
                    label=f"{key} {what}")
    plots._maybe_log(ax, drawn)
    ax.set(title="Training loss against the best constant predictor", xlabel="optimizer step",
           ylabel="loss (running mean)")
    ax.legend(fontsize=8)
    return fig


PLOTS = (
    ("compare-spread", "Prediction spread", "Below the dashed line a run's predictions are flat: they barely vary "
     "with the input while the targets do.", spread_plot),
    ("compare-loss", "Loss against the constant predictor", "A run whose solid line settles on its dashed line "
     "learned nothing a single constant would not.", loss_plot),
)


def _plots(c: Comparison) -> str:
    import matplotlib

    figures = []
    with matplotlib.rc_context(plots.STYLE):
        for plot_id, title, caption, build in PLOTS:
            head = f"<figcaption><h3>{_e(title)}</h3><p>{_e(caption)}</p></figcaption>"
            try:
                svg = plots.to_svg(build(c))
                figures.append(f'<figure class="plot" id="plot-{plot_id}">{head}{svg}</figure>')
            except Exception as exc:  # one bad series must not cost the page
                figures.append(f'<figure class="plot-error" id="plot-{plot_id}">{head}'
                               f"<p>Could not draw this plot: {_e(type(exc).__name__)}: {_e(exc)}</p></figure>")
    return f'<section id="plots"><h2>Over the steps</h2>{"".join(figures)}</section>'


# ------------------------------------------------------------------ the page
def _banner(key: str, side: Side) -> str:
    r = side.report
    verdict = r.get("verdict") or "inconclusive"
    head = VERDICT_TEXT.get(verdict, verdict)
    step = (r.get("flatline") or {}).get("step")
    if verdict == "flatlined" and step is not None:
        head += f" at step {_num(step)}"
    lines = [f"Task {r.get('task') or 'unknown'}, {_num(r.get('steps_observed', 0))} optimizer steps observed.",
             f"Last prediction spread {_value(last(side.spread()))} of the targets' (flat below {FLAT_SPREAD}); "
             f"loss {_value(last(side.loss_ratio()))} of the constant predictor's."]
    body = "".join(f"<p>{_e(line)}</p>" for line in lines)
    if r.get("command"):
        body += f"<p>Command: <code>{_e(' '.join(str(x) for x in r['command']))}</code></p>"
    return (f'<header class="banner verdict-{_e(verdict)}" id="verdict-{key.lower()}">'
            f"<h2>{_e(_side_label(key, side))}</h2><h1>{_e(head)}</h1>{body}</header>")


def _cell(f: dict[str, Any] | None) -> str:
    if not f:
        return "-"
    seen = f", step {_num(f['step'])}" if f.get("step") is not None else ""
    return _e(f"{f.get('severity') or 'info'}{seen}")


def _findings_diff(c: Comparison) -> str:
    rows = c.findings()
    if not rows:
        return '<section id="findings-diff"><h2>Findings</h2><p>Neither run has a finding.</p></section>'
    body = "".join(f'<tr id="diff-{_e(r.code)}"><td><code>{_e(r.code)}</code></td><td>{_e(r.title)}</td>'
                   f'<td class="{r.where.lower().replace(" ", "-")}">{_e(r.where)}</td><td>{_cell(r.a)}</td>'
                   f"<td>{_cell(r.b)}</td></tr>" for r in rows)
    return ('<section id="findings-diff"><h2>Findings</h2><table><tr><th>code</th><th>title</th><th>in</th>'
            f"<th>A</th><th>B</th></tr>{body}</table></section>")


def _curve_table(c: Comparison) -> str:
    spreads, ratios = (c.a.spread(), c.b.spread()), (c.a.loss_ratio(), c.b.loss_ratio())
    rows = "".join(f"<tr><td>{step}</td>"
                   + "".join(f"<td>{_e(_value(at_step(v, step)))}</td>" for v in (*spreads, *ratios)) + "</tr>"
                   for step in c.table_steps())
    return ('<details id="curve-table"><summary>The same curves as numbers</summary><table><tr><th>step</th>'
            "<th>A spread</th><th>B spread</th><th>A loss ratio</th><th>B loss ratio</th></tr>"
            f"{rows}</table></details>")


def _full_findings(c: Comparison) -> str:
    columns = []
    for key, side in (("A", c.a), ("B", c.b)):
        found = side.report.get("findings") or []
        items = "".join(_finding(i, f) for i, f in enumerate(found, 1)) or "<p>No findings.</p>"
        columns.append(f'<div id="findings-{key.lower()}"><h3>{_e(_side_label(key, side))}</h3>{items}</div>')
    return f'<section id="findings"><h2>The findings in full</h2><div class="pair">{"".join(columns)}</div></section>'


def render_compare_html(c: Comparison) -> str:
    """The whole page: both verdicts, the findings of each, the two curves plotted, each run's findings in full."""
    title = f"defib compare: {c.a.name} and {c.b.name}"
    body = "".join([f"<h1>defib compare</h1><p>A: <code>{_e(c.a.name)}</code>, B: <code>{_e(c.b.name)}</code></p>",
                    f'<section id="runs" class="pair">{_banner("A", c.a)}{_banner("B", c.b)}</section>',
                    _findings_diff(c), _plots(c), _curve_table(c), _full_findings(c)])
    footer = (f"<footer>defib {_e(__version__)}. This file is self-contained: it loads "
              "nothing from the network. One run's report: <code>defib report FILE.json --html OUT</code>.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}{PAIR_CSS}</style></head>"
            f"<body>{body}{footer}</body></html>\n")


def write_compare_html(c: Comparison, path: str | os.PathLike) -> None:
    """Render and write the page atomically (a reader never sees half of it)."""
    from defib.report.json import write_atomic

    write_atomic(render_compare_html(c), path)
