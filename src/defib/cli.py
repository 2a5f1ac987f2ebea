"""The ``defib`` command line (typer): run, probe, rules, rule."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from defib import __version__

# click's exception base, reached through typer's public API (typer may vendor its own click)
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _OneLineErrors(TyperGroup):
    """Usage errors (unknown option, missing argument) as one line on stderr, exit 2, like ``fail``."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _CLICK_ERROR as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                sys.exit(2)  # the help text was already printed
            hint = f" (see {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) is not None else ""
            typer.echo(f"defib: error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("defib: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Find out why a fine-tuned BERT predicts the same score for every input.")

BOOT_DIR = Path(__file__).parent / "_boot"


def fail(message: str) -> None:
    """A one-line usage or input error: exit 2, no traceback."""
    typer.echo(f"defib: error: {message}", err=True)
    raise typer.Exit(2)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"defib {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    """defib watches a PyTorch fine-tuning run and says why it flatlines."""


@app.command(context_settings={"allow_interspersed_args": False})
def run(command: list[str] = typer.Argument(..., help="The training command, after --: python train.py ARGS"),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report here."),
        steps: int = typer.Option(0, "--steps", min=0, help="Stop the script after N optimizer steps (0: run to the end)."),
        ignore: list[str] = typer.Option([], "--ignore", help="Rule codes to leave out of the report."),
        quiet: bool = typer.Option(False, "--quiet", help="Print only the verdict line.")) -> None:
    """Run a training script unchanged and diagnose it: defib run [--json PATH] -- python train.py ARGS."""
    _check_command(command)
    from defib.report import json as json_report
    from defib.report.text import headline, render

    with tempfile.TemporaryDirectory(prefix="defib-") as tmp:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(BOOT_DIR)] + [p for p in [env.get("PYTHONPATH")] if p])
        env["DEFIB_REPORT_DIR"] = tmp
        env["DEFIB_STEPS"] = str(steps)
        try:
            proc = subprocess.run(command, env=env)
        except KeyboardInterrupt:
            proc = subprocess.CompletedProcess(command, 130)
        report = _pick_report(Path(tmp))
    report["script_exit"] = proc.returncode
    report["command"] = command
    if ignore:
        report["findings"] = [f for f in report["findings"] if f["code"] not in set(ignore)]
    if json_path is not None:
        json_report.write(report, json_path)
    if quiet:
        typer.echo(f"defib: {headline(report)}")
    else:
        render(report)
    code = _exit_code(report)
    raise typer.Exit(code if code else (proc.returncode if proc.returncode > 0 else 0))


def _check_command(command: list[str]) -> None:
    if not command:
        fail("no command to run: use defib run -- python train.py ARGS")
    exe = command[0]
    if shutil.which(exe) is None and not Path(exe).exists():
        fail(f"command not found: {exe}")
    if Path(exe).name.startswith("python") and len(command) > 1 and not command[1].startswith("-"):
        script = Path(command[1])
        if not script.exists():
            fail(f"script not found: {script}")


def _pick_report(folder: Path) -> dict:
    """The report of the process that trained (rank 0, then most steps)."""
    best = None
    for path in folder.glob("report.*.json"):
        try:
            rep = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        key = (rep.get("rank", 0) == 0, rep.get("steps_observed", 0))
        if best is None or key > best[0]:
            best = (key, rep)
    if best is not None:
        return best[1]
    from defib import __version__ as version

    return {"defib_version": version, "verdict": "inconclusive", "task": "unknown", "steps_observed": 0,
            "flatline": None, "findings": [], "confirmed_fixes": [],
            "observed": {"note": "the command never imported torch or never reached a model"}}


def _exit_code(report: dict) -> int:
    if report.get("verdict") == "flatlined" or any(f.get("severity") == "error" for f in report.get("findings", [])):
        return 1
    return 0


@app.command("probe")
def probe_cmd(model: str = typer.Option(..., "--model", help="A local model folder (transformers format)."),
              data: Optional[Path] = typer.Option(None, "--data", help="CSV, TSV or JSONL rows to probe with."),
              text: str = typer.Option("text", "--text", help="The text column."),
              text_pair: Optional[str] = typer.Option(None, "--text-pair", help="A second text column (pairs)."),
              label: str = typer.Option("label", "--label", help="The label column."),
              task: Optional[str] = typer.Option(None, "--task", help="regression or classification (default: guessed)."),
              rows: int = typer.Option(64, "--rows", min=8, max=512, help="Rows to probe with."),
              json_path: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report here."),
              ignore: list[str] = typer.Option([], "--ignore", help="Rule codes to leave out of the report."),
              quiet: bool = typer.Option(False, "--quiet", help="Print only the verdict line.")) -> None:
    """Ask a model directly: initial loss, input sensitivity, gradient flow, overfit one batch, LR sweep, label control."""
    if task not in (None, "regression", "classification"):
        fail(f"--task {task!r}: use regression or classification")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here: a hub name must fail fast, not hang
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from defib.evidence.probes.data import ProbeInputError
    from defib.evidence.probes.sample_file import builtin_rows, parse_labels, read_rows
    from defib.report import json as json_report
    from defib.report.text import headline, render

    if not Path(model).is_dir():
        fail(f"model folder not found: {model} (defib probe loads a local folder; it never downloads)")
    try:
        if data is not None:
            texts, raw = read_rows(data, text, label, text_pair, rows=rows)
            labels, task, _ = parse_labels(raw, task, str(data))
            source = str(data)
            net, tok = _load_model(model, task, labels)
        else:
            net, tok = _load_model(model, task, None)
            task = task or ("regression" if net.config.num_labels == 1 else "classification")
            texts, labels, source = builtin_rows(task, net.config.num_labels, rows=rows)
        diagnosis = _probe_with_progress(net, tok, texts, labels, task, source, tuple(c.upper() for c in ignore))
    except ProbeInputError as exc:
        fail(str(exc))
    report = diagnosis.to_dict()
    report["model"] = model
    if json_path is not None:
        json_report.write(report, json_path)
    if quiet:
        typer.echo(f"defib: {headline(report)}")
    else:
        render(report)
    raise typer.Exit(_exit_code(report))


def _load_model(path: str, task: str | None, labels: list | None):
    """A local checkpoint as a sequence classifier; a bare encoder gets a fresh head sized for the labels."""
    from defib.evidence.probes.data import ProbeInputError

    try:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        config = AutoConfig.from_pretrained(path)
        has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        if not has_head:
            if task == "classification" or (task is None and labels is not None and len(set(labels)) <= 20
                                            and all(isinstance(v, int) for v in labels)):
                config.num_labels = max(2, int(max(labels)) + 1) if labels else 2
            else:
                config.num_labels = 1
        tok = AutoTokenizer.from_pretrained(path)
        net = AutoModelForSequenceClassification.from_pretrained(path, config=config)
    except (OSError, ValueError, KeyError) as exc:
        raise ProbeInputError(f"cannot load a model from {path}: {str(exc).splitlines()[0]}") from None
    return net, tok


def _probe_with_progress(net, tok, texts, labels, task, source, ignore):
    """Run defib.probe with a progress bar on stderr for the training probes."""
    from rich.console import Console
    from rich.progress import Progress

    from defib.api import probe

    with Progress(console=Console(stderr=True), transient=True) as bar:
        def progress(description: str, total: int):
            task_id = bar.add_task(description, total=total)
            return lambda: bar.advance(task_id)

        return probe(net, tok, texts, labels=labels, task=task, progress=progress, source=source, ignore=ignore)


@app.command("rules")
def rules_cmd() -> None:
    """List every rule: code, cause and title."""
    from rich.console import Console
    from rich.table import Table

    from defib.rules.base import all_rules

    table = Table("code", "cause", "title", "severity")
    for code, cls in all_rules().items():
        table.add_row(code, cls.cause or "(symptom)", cls.title, str(cls.severity))
    Console().print(table)


@app.command("rule")
def rule_cmd(code: str = typer.Argument(..., help="A rule code, e.g. L001.")) -> None:
    """Explain one rule, from its docstring."""
    from rich.console import Console
    from rich.markdown import Markdown

    from defib.rules.base import all_rules

    rules = all_rules()
    cls = rules.get(code.upper())
    if cls is None:
        fail(f"no rule {code!r}; known: {', '.join(rules)}")
    doc = cls.doc()
    parts = [f"# {cls.code}: {cls.title}", f"cause: `{cls.cause or 'symptom'}`, severity: {cls.severity}",
             doc.get("summary", "")]
    for section in ("What it detects", "Why it flattens predictions", "Example", "Fix"):
        if doc.get(section):
            text = doc[section]
            if section == "Example":  # keep the example's lines apart (markdown would join them)
                text = "  \n".join(text.splitlines())
            parts.append(f"## {section}\n{text}")
    Console().print(Markdown("\n\n".join(parts)))


if __name__ == "__main__":
    app()
