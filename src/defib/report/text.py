"""The terminal report (rich): verdict first, then causes with evidence, place and fix."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

VERDICT_STYLE = {"healthy": "bold green", "flatlined": "bold red", "at_risk": "bold yellow",
                 "inconclusive": "bold blue"}
SEVERITY_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


def headline(report: dict[str, Any]) -> str:
    verdict = report.get("verdict", "inconclusive")
    flat = report.get("flatline") or {}
    head = f"{verdict.upper().replace('_', ' ')}"
    if verdict == "flatlined" and flat and not report.get("probe"):
        head += f" at step {flat.get('step')}"
    check = report.get("check")
    if check is not None:
        return head + f"  ({report.get('task', 'unknown')}, {check.get('rows', 0):,} rows checked)"
    probe = report.get("probe")
    if probe:
        return head + f"  ({report.get('task', 'unknown')}, probe of {probe.get('rows')} rows from {probe.get('source')})"
    predict = report.get("predict")
    if predict is not None:
        return head + f"  ({report.get('task', 'unknown')}, predictions of {predict.get('rows', 0):,} rows)"
    return head + f"  ({report.get('task', 'unknown')}, {report.get('steps_observed', 0)} optimizer steps observed)"


def check_lines(check: dict[str, Any]) -> list[str]:
    """The data check's summary under the headline: source, task inference, lengths, labels."""
    how = f"inferred: {check.get('task_reason')}" if check.get("task_inferred") else "given"
    lines = [f"{check.get('source')}: {check.get('rows', 0):,} rows; task {check.get('task')} ({how})"]
    lengths = check.get("token_lengths") or {}
    if lengths:
        cut = check.get("rows_truncated", 0) / max(1, check.get("rows", 1))
        lines.append(f"tokens per row: median {lengths.get('p50')}, 95% within {lengths.get('p95')}, longest "
                     f"{lengths.get('longest')}; max_length {check.get('max_length')} "
                     f"({check.get('max_length_source')}) cuts {cut:.1%} of rows")
    labels = check.get("labels") or {}
    if labels.get("kind") == "regression":
        lines.append(f"labels: mean {_num(labels.get('mean'))}, std {_num(labels.get('std'))}, "
                     f"range {_num(labels.get('min'))}..{_num(labels.get('max'))}")
    elif labels.get("counts"):
        counts = list(labels["counts"].items())
        shown = ", ".join(f"{k}: {v:,}" for k, v in counts[:6]) + (f", ... ({len(counts)} in all)" if len(counts) > 6 else "")
        what = f"tags over {labels['tags']:,} tokens" if labels.get("tags") is not None else "labels"
        lines.append(f"{what}: {shown}")
    return lines


def predict_lines(p: dict[str, Any]) -> list[str]:
    """A ``defib predict`` report's summary under the headline: which model on which rows, and what came out."""
    lines = [f"{p['source']}: predicted by {p.get('model')}"] if p.get("source") else []
    if p.get("top_class") is not None:
        lines.append(f"most predicted class {p['top_class']}, for {_num(p.get('top_class_share'))} of the rows; "
                     f"raw outputs spread {_num(p.get('output_spread'))} across rows")
    elif p.get("output_spread") is not None:
        lines.append(f"raw outputs spread {_num(p['output_spread'])} across rows")
    lines.append(f"{p.get('distinct_texts', 0):,} distinct inputs, {p.get('distinct_encodings', 0):,} distinct after "
                 f"tokenization; {p.get('rows_at_max_length', 0):,} rows at max_length {p.get('max_length')}")
    return lines


def render(report: dict[str, Any], console: Console | None = None) -> None:
    """Print a diagnosis dict (the JSON contract) to the terminal."""
    console = console or Console(stderr=False, highlight=False)
    verdict = report.get("verdict", "inconclusive")
    body = Text(headline(report), style=VERDICT_STYLE.get(verdict, "bold"))
    flat = report.get("flatline")
    if flat:
        body.append(f"\nprediction spread {_num(flat.get('pred_std'))} vs target spread {_num(flat.get('target_std'))}; "
                    f"loss {_num(flat.get('loss'))} vs constant-predictor loss {_num(flat.get('baseline_loss'))}",
                    style="default")
    end = script_end(report)
    if end:
        body.append(f"\n{end}", style="default")
    if report.get("check") is not None:
        for line in check_lines(report["check"]):
            body.append("\n" + line, style="default")
    if report.get("predict") is not None:
        for line in predict_lines(report["predict"]):
            body.append("\n" + line, style="default")
    if report.get("stopped_after_steps"):
        body.append(f"\ndefib stopped the script after {report['stopped_after_steps']} steps (--max-steps)", style="default")
    console.print(Panel(body, title="defib", title_align="left", expand=False))
    if report.get("probe"):
        for line in probe_lines(report["probe"]):
            console.print("  " + escape(line), style="dim")
    findings = report.get("findings") or []
    if not findings:
        note = ("No findings." if verdict != "inconclusive" else
                "No rows to check." if report.get("check") is not None else
                "No rows to predict." if report.get("predict") is not None else inconclusive_note(report))
        console.print(note)
    for i, f in enumerate(findings, 1):
        sev = f.get("severity", "info")
        label = f.get("cause") or ("note" if report.get("check") is not None else "symptom")
        console.print(Text.assemble((f"{i}. [{f['code']}] ", "bold"), (label, "bold"),
                                    (f"  {sev}", SEVERITY_STYLE.get(sev, "")),
                                    (f"  confidence {f.get('confidence', 0):.2f}" + (
                                        "" if report.get("check") is not None or report.get("probe")
                                        else f", first seen at step {f.get('step')}"), "dim")))
        console.print("   " + escape(f.get("message", "")))
        where = f.get("where")
        if where:
            console.print(Text.assemble(("   at ", "dim"), (f"{where['file']}:{where['line']}", "underline"),
                                        ("  " + where.get("code", ""), "")))
        if f.get("fix"):
            console.print(Text.assemble(("   fix: ", "green"), (f["fix"], "")))
        if f.get("symptoms"):
            console.print(f"   explains: {', '.join(f['symptoms'])}", style="dim")
    for c in report.get("confirmed_fixes") or []:
        state = Text("confirmed", style="bold green") if c.get("recovered") else Text("not confirmed", style="yellow")
        console.print(Text.assemble("fix for ", (str(c.get("cause")), "bold"), ": ", (str(c.get("fix", "")), ""),
                                    " - ", state))
        console.print("   " + escape(f"{c.get('reason', '')}; rerun of {c.get('steps')} steps took "
                                      f"{_num(c.get('seconds'))} s"), style="dim")
    if findings:
        console.print(Text("Explain a finding: defib rule CODE.  Silence one: --ignore CODE.", style="dim"))


def probe_lines(p: dict[str, Any]) -> list[str]:
    """What each probe measured, one line each (the findings below say what it means)."""
    out = []
    i, v, g = p.get("initial"), p.get("sensitivity"), p.get("gradient_flow")
    if i:
        out.append(f"initial loss {_num(i['loss'])} (fresh head: {_num(i['reference'])}; "
                   f"constant predictor: {_num(i['baseline'])})")
    if v:
        line = f"outputs differ across {v['rows']} inputs by {_num(v['output_spread'])} of their size"
        if v.get("mask_effect") is not None:
            line += f"; another row's attention mask moves them by {_num(v['mask_effect'])} of that spread"
        out.append(line)
    if g is not None and p.get("grad_norms") is not None:
        norms = ", ".join(f"{k} {_num(x)}" for k, x in p["grad_norms"].items())
        out.append(f"gradient norms: {norms or 'none'}" + (f"; {len(g['frozen'])} tensors frozen" if g["frozen"] else ""))
    r = p.get("lr_range")
    if r and r.get("lrs"):
        out.append(f"LR sweep ({r['optimizer']}): lowest loss at {_num(r['min_loss_lr'])}, "
                   + (f"runs away at {_num(r['diverged_lr'])}" if r.get("diverged_lr") else "no runaway up to "
                      f"{_num(r['lrs'][-1])}") + f"; suggested lr {_num(r['suggested_lr'])}")
    o = p.get("overfit")
    if o:
        out.append(f"overfit {o['rows']} rows: " + (f"reached a tenth of the constant loss in {o['reached_at']} steps"
                                                   if o["reached_at"] else f"not within {o['steps']} steps")
                   + f" (lr {_num(o['lr'])})")
    q = p.get("permutation")
    if q:
        out.append(f"label control, held-out loss: real labels {_num(q['real_loss'])}, shuffled "
                   f"{_num(q['permuted_loss'])}, constant predictor {_num(q['baseline'])}")
    for name, err in (p.get("errors") or {}).items():
        out.append(f"probe {name} failed: {err}")
    return out


def script_end(report: dict[str, Any]) -> str | None:
    """How a ``defib run`` script ended, when not normally: the note saying what was observed before, or its status."""
    if report.get("script_exit") in (None, 0) and not report.get("stop_signal"):
        return None
    return (report.get("observed") or {}).get("note") or f"the script exited with status {report['script_exit']}"


def inconclusive_note(report: dict[str, Any]) -> str:
    seen = dict(report.get("observed") or {})
    if seen.get("verdict_so_far") == "healthy":
        return (f"No collapse in the {report.get('steps_observed', 0)} optimizer steps observed before the script "
                "ended, but it did not end normally.")
    if script_end(report):
        seen.pop("note", None)  # already said under the verdict
    parts = [f"{k}: {v}" for k, v in seen.items()]
    return "No training step with predictions was observed" + (f" ({', '.join(parts)})." if parts else ".")


def render_text(report: dict[str, Any], width: int = 100) -> str:
    """The terminal report as plain text (no colour codes), for ``print(diagnosis)`` and IPython's terminal."""
    import io

    out = io.StringIO()
    # force_jupyter=False: in a kernel rich would draw into the notebook itself instead of into ``out``
    render(report, Console(file=out, width=width, highlight=False, color_system=None, force_terminal=False,
                           force_jupyter=False))
    return out.getvalue()


def print_report(diagnosis: Any) -> None:
    render(diagnosis.to_dict() if hasattr(diagnosis, "to_dict") else diagnosis)
