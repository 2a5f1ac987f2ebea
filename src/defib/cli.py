"""The ``defib`` command line (typer): run, train, predict, rules, rule."""

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


@app.command("train")
def train_cmd(
        data: Path = typer.Argument(..., help="Training data: CSV, TSV or JSON Lines."),
        text: str = typer.Option(..., "--text", help="Column with the text."),
        label: str = typer.Option(..., "--label", help="Column with the label (score, class, or list of labels)."),
        model: str = typer.Option(..., "--model", help="Pretrained model folder (or a hub name in the local cache)."),
        out: Path = typer.Option(..., "--out", help="Folder to write the fine-tuned model to (made at the end)."),
        text_pair: Optional[str] = typer.Option(None, "--text-pair", help="Second text column (sentence pairs)."),
        task: Optional[str] = typer.Option(None, "--task", help="regression, classification or multilabel "
                                                                "(default: from the labels)."),
        dev: Optional[Path] = typer.Option(None, "--dev", help="Dev file with the same columns (default: hold out "
                                                               "--dev-share of DATA)."),
        dev_share: float = typer.Option(0.1, "--dev-share", help="Share of DATA held out when there is no --dev."),
        epochs: float = typer.Option(4.0, "--epochs", min=0.01, help="Epochs (early stopping may end sooner)."),
        lr: float = typer.Option(5e-5, "--lr", min=0.0, help="Peak learning rate (AdamW)."),
        batch_size: int = typer.Option(16, "--batch-size", min=1, help="Rows per device per micro-batch."),
        max_length: int = typer.Option(128, "--max-length", min=8, help="Truncate inputs to this many tokens."),
        loss: Optional[str] = typer.Option(None, "--loss", help="mse, huber, ce, weighted-ce, focal or bce "
                                                                "(default: by task; weighted-ce if imbalanced)."),
        scheduler: str = typer.Option("linear", "--scheduler", help="linear, cosine (after warmup) or plateau."),
        warmup: float = typer.Option(0.1, "--warmup", min=0.0, max=0.5, help="Share of steps spent warming up."),
        weight_decay: float = typer.Option(0.01, "--weight-decay", min=0.0, help="AdamW weight decay."),
        clip: float = typer.Option(1.0, "--clip", min=0.0, help="Clip the gradient norm to this (0: off)."),
        accumulation: int = typer.Option(1, "--accumulation", min=1, help="Micro-batches per optimizer step."),
        patience: int = typer.Option(2, "--patience", min=1, help="Evaluations without improvement before stopping."),
        eval_every: int = typer.Option(0, "--eval-every", min=0, help="Evaluate every N steps (0: every epoch)."),
        seed: int = typer.Option(42, "--seed", help="Seed for the head, the shuffling and the dev split."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out at the end if it exists."),
        no_check: bool = typer.Option(False, "--no-check", help="Skip defib check on the training data."),
        ignore_check: bool = typer.Option(False, "--ignore-check", help="Train even if defib check finds an error."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar.")) -> None:
    """Fine-tune a BERT-family model the way that does not flatline, with defib watching."""
    from defib.train import pipeline
    from defib.train.data import DataError
    from defib.train.summary import diagnosis_lines, final_table

    opts = pipeline.TrainOptions(
        data=data, text=text, label=label, model=model, out=out, text_pair=text_pair, task=task, dev=dev,
        dev_share=dev_share, epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, loss=loss,
        scheduler=scheduler, warmup=warmup, weight_decay=weight_decay, clip=clip, accumulation=accumulation,
        patience=patience, eval_every=eval_every, seed=seed, resume=resume, overwrite=overwrite, check=not no_check,
        ignore_check=ignore_check, progress=not no_progress)
    main_rank = int(os.environ.get("RANK", "0") or 0) == 0
    say = typer.echo if main_rank else (lambda _msg: None)
    try:
        prep = pipeline.prepare(opts)
        pipeline.check_training_data(opts, prep)
    except DataError as exc:
        fail(str(exc))
    except pipeline.CheckFailed as exc:
        if main_rank:
            from defib.report.text import print_report

            print_report(exc.diagnosis)
        typer.echo("defib: error: defib check found an error in the training data; fix it, or pass --ignore-check",
                   err=True)
        raise typer.Exit(1)
    say(f"defib train: {prep.space.task}, {len(prep.train)} training rows, {len(prep.dev)} dev rows, "
        f"loss {prep.loss}")
    for note in prep.notes:
        say(f"  {note}")
    result = pipeline.train(opts, prep)
    if main_rank:
        for line in diagnosis_lines(result.diagnosis):
            typer.echo(line)
        final_table(result)
        typer.echo(f"model written to {out}")
    raise typer.Exit(result.diagnosis.exit_code() if result.diagnosis is not None else 0)


@app.command("predict")
def predict_cmd(
        model_dir: Path = typer.Argument(..., help="A folder written by defib train."),
        data: Path = typer.Argument(..., help="Rows to predict: CSV, TSV or JSON Lines."),
        out: Path = typer.Option(..., "--out", help="CSV to write: row, prediction (and class probabilities)."),
        text: Optional[str] = typer.Option(None, "--text", help="Text column (default: the one trained on)."),
        text_pair: Optional[str] = typer.Option(None, "--text-pair", help="Second text column (default: as trained)."),
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="Rows per forward pass."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Write the predict-stage diagnosis here.")) -> None:
    """Predict with a model from defib train, on its own scale, and check the predictions."""
    from defib.train import predict as P
    from defib.train.data import DataError

    try:
        loaded = P.load(model_dir)
        col = P.read_inputs(loaded, data, text, text_pair)
    except DataError as exc:
        fail(str(exc))
    result = P.predict(loaded, col, batch_size=batch_size)
    P.write_csv(out, loaded.space, result.values, result.outputs)
    typer.echo(f"defib predict: {len(result.values)} predictions written to {out}")
    if json_path is not None:
        from defib.report import json as json_report

        json_report.write(result.diagnosis.to_dict(), json_path)
    for f in result.diagnosis.findings:
        typer.echo(f"defib: warning [{f.code}] {f.cause}: {f.message}", err=True)


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
