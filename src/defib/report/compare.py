"""Two watched runs side by side (``defib compare A.json B.json``): the before and after of a fix.

What changed is what a person wants to see: the verdict, which findings are
in one run and not the other, and the two curves defib judges a flatline
by, the prediction spread against the target spread and the loss against
the constant predictor's, step by step. This module lines the two reports
up (:class:`Comparison`) and prints them as terminal tables; the HTML page
is ``report/compare_html.py``. The reports come checked by
``report/saved.py``'s ``load_run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from defib.report.saved import series
from defib.report.text import SEVERITY_STYLE, VERDICT_STYLE
from defib.rules.thresholds import FLAT_SPREAD

TABLE_ROWS = 10  # steps shown in the terminal's table of the curves (the HTML page plots every point)


@dataclass(frozen=True)
class Side:
    """One run of the two: its name (the path as given) and its report."""

    name: str
    report: dict[str, Any]

    def spread(self) -> dict[int, float | None]:
        """Step -> prediction spread / target spread (defib's flatline measure)."""
        return dict(zip(*series(self.report, "spread")))

    def loss_ratio(self) -> dict[int, float | None]:
        """Step -> running-mean loss / constant-predictor loss, at the steps that have both (1: no better than it)."""
        base = dict(zip(*series(self.report, "baseline")))
        out = {}
        for step, loss in zip(*series(self.report, "loss")):
            b = base.get(step)
            out[step] = loss / b if loss is not None and b else None
        return out


@dataclass(frozen=True)
class FindingRow:
    """One finding code and where it appears: the finding of run A, of run B, or of both."""

    code: str
    a: dict[str, Any] | None
    b: dict[str, Any] | None

    @property
    def where(self) -> str:
        return "both" if self.a and self.b else "only A" if self.a else "only B"

    @property
    def title(self) -> str:
        f = self.a or self.b or {}
        return str(f.get("title") or f.get("cause") or "")


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side

    def findings(self) -> list[FindingRow]:
        """Every finding code of either run: A's in A's order, then those only B has, in B's order."""
        fa = {f["code"]: f for f in self.a.report.get("findings") or []}
        fb = {f["code"]: f for f in self.b.report.get("findings") or []}
        return [FindingRow(code, fa.get(code), fb.get(code)) for code in dict.fromkeys([*fa, *fb])]

    def table_steps(self) -> list[int]:
        """At most TABLE_ROWS recorded steps, evenly spread over the longer run, its last step included."""
        steps = sorted(set(self.a.spread()) | set(self.b.spread()))
        if len(steps) <= TABLE_ROWS:
            return steps
        picks = {round(i * (len(steps) - 1) / (TABLE_ROWS - 1)) for i in range(TABLE_ROWS)}
        return [steps[i] for i in sorted(picks)]


def at_step(values: dict[int, float | None], step: int) -> float | None:
    """The value recorded at ``step`` or the last one before it; None past the run's end or before its first."""
    if not values or step > max(values):
        return None
    earlier = [s for s in values if s <= step]
    return values[max(earlier)] if earlier else None


def last(values: dict[int, float | None]) -> float | None:
    return at_step(values, max(values)) if values else None


def verdict_line(report: dict[str, Any]) -> str:
    """The verdict in capitals, with the step of the collapse when it flatlined."""
    verdict = str(report.get("verdict") or "inconclusive")
    step = (report.get("flatline") or {}).get("step")
    at = f" at step {step}" if verdict == "flatlined" and step is not None else ""
    return verdict.upper().replace("_", " ") + at


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _found(f: dict[str, Any] | None) -> Text:
    """A finding's cell: its severity and the step it first appeared, or a dash where the run has none."""
    if not f:
        return Text("-", style="dim")
    sev = str(f.get("severity") or "info")
    seen = f", step {f['step']}" if f.get("step") is not None else ""
    return Text(f"{sev}{seen}", style=SEVERITY_STYLE.get(sev, ""))


def render_comparison(c: Comparison, console: Console | None = None) -> None:
    """Three tables: the runs at a glance, the findings of each, and the two curves at a few steps."""
    console = console or Console(highlight=False)
    a, b = c.a, c.b
    head_a, head_b = f"A  {escape(a.name)}", f"B  {escape(b.name)}"
    runs = Table(title="defib compare", title_justify="left")
    runs.add_column("")
    runs.add_column(head_a)
    runs.add_column(head_b)
    runs.add_row("verdict", *(Text(verdict_line(s.report), style=VERDICT_STYLE.get(s.report.get("verdict"), "bold"))
                              for s in (a, b)))
    runs.add_row("task", *(escape(str(s.report.get("task") or "unknown")) for s in (a, b)))
    runs.add_row("optimizer steps observed", *(str(s.report.get("steps_observed", 0)) for s in (a, b)))
    runs.add_row(f"spread at the end (flat below {FLAT_SPREAD})", *(_num(last(s.spread())) for s in (a, b)))
    runs.add_row("loss / constant loss at the end", *(_num(last(s.loss_ratio())) for s in (a, b)))
    runs.add_row("findings", *(escape(", ".join(f["code"] for f in s.report.get("findings") or []) or "none")
                               for s in (a, b)))
    console.print(runs)

    rows = c.findings()
    if rows:
        found = Table(title="Findings", title_justify="left")
        for column in ("code", "title", "in", "A", "B"):
            found.add_column(column)
        for r in rows:
            found.add_row(escape(r.code), escape(r.title), r.where, _found(r.a), _found(r.b))
        console.print(found)

    curves = Table(title="Over the steps", title_justify="left")
    for column in ("step", "A spread", "B spread", "A loss ratio", "B loss ratio"):
        curves.add_column(column, justify="right")
    spreads, ratios = (a.spread(), b.spread()), (a.loss_ratio(), b.loss_ratio())
    for step in c.table_steps():
        curves.add_row(str(step), *(_num(at_step(v, step)) for v in (*spreads, *ratios)))
    console.print(curves)
    console.print(Text("spread: prediction spread / target spread; loss ratio: loss / constant-predictor loss; "
                       "a dash: the run had ended or had not recorded that step yet. "
                       "defib report FILE.json prints one run's findings in full.", style="dim"))
