"""The ``defib`` command line (typer): run, confirm, check, probe, train, predict, report, compare, rules, rule."""

from __future__ import annotations

import enum
import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import typer

from defib._version import __version__
from defib.cli_errors import OneLineErrors, _stderr, fail
from defib.cli_options import (LogTo, Task, TrainTask, aliased, confirm_runs_option, confirm_steps_option,
                               html_option, ignore_option, json_option, label_option, log_to_option, max_length_option,
                               max_steps_option, model_option, no_progress_option, quiet_option, task_option,
                               text_option, text_pair_option)
from defib.signals.run import TOKEN_TASK

app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Find out why a fine-tuned BERT predicts the same score for every input.")


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"defib {__version__}")
        raise typer.Exit()


def check_outputs(*paths: Optional[Path]) -> None:
    """Refuse output paths that cannot be written before any work is done (one line, exit 2)."""
    from defib.report.paths import unwritable

    for path in paths:
        if path is None:
            continue
        if path.is_dir():
            fail(f"report path is a directory: {path}")
        why = unwritable(path)
        if why:
            fail(f"cannot write {path}: {why}")


def write_reports(report: dict, json_path: Optional[Path], html_path: Optional[Path]) -> None:
    """Write the JSON and HTML reports that were asked for; a path that cannot be written is a one-line error."""
    from defib.report import json as json_report

    for path, write in ((json_path, json_report.write), (html_path, _write_html)):
        if path is None:
            continue
        try:
            write(report, path)
        except OSError as exc:
            fail(f"cannot write the report {path}: {exc.strerror or exc}")


def _emit(report: dict, json_path: Optional[Path], html_path: Optional[Path], quiet: bool) -> None:
    """Print the verdict line or the whole text report, then write the reports asked for.

    The terminal first: a file that cannot be written never loses the diagnosis.
    """
    from defib.report.text import headline, render

    if quiet:
        typer.echo(f"defib: {headline(report)}")
    else:
        render(report)
    write_reports(report, json_path, html_path)


def _write_html(report: dict, path: Path) -> None:
    from defib.report.html import write_html

    write_html(report, path)


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    """defib watches a PyTorch fine-tuning run and says why it flatlines."""


@app.command(cls=aliased({"--steps": "--max-steps"}), context_settings={"allow_interspersed_args": False})
def run(command: list[str] = typer.Argument(..., help="The training command, after --: python train.py ARGS"),
        json_path: Optional[Path] = json_option(),
        html_path: Optional[Path] = html_option(),
        steps: int = max_steps_option(),
        ignore: list[str] = ignore_option(),
        quiet: bool = quiet_option(),
        confirm: bool = typer.Option(False, "--confirm", help="Rerun with the fix for the top cause and check the "
                                                             "collapse goes away."),
        confirm_runs: int = confirm_runs_option(),
        confirm_steps: int = confirm_steps_option(),
        log_to: LogTo = log_to_option()) -> None:
    """Run a training script unchanged and diagnose it: defib run [--json PATH] [--html PATH] -- python train.py ARGS."""
    from defib.stages.launch import run_command

    _check_command(command)
    check_outputs(json_path, html_path)
    outcome = run_command(command, steps, tuple(c.upper() for c in ignore), confirm_runs if confirm else 0,
                          confirm_steps, say=_stderr, log_to=log_to.value)
    _emit(outcome.report, json_path, html_path, quiet)
    code = _exit_code(outcome.report)
    # defib stopped by a signal exits 128 + N; else a diagnosis that failed the run decides; else the script's status
    raise typer.Exit(outcome.status if outcome.stopped or not code else code)


@app.command("confirm", cls=aliased({"--runs": "--confirm-runs", "--steps": "--confirm-steps"}),
             context_settings={"allow_interspersed_args": True})
def confirm_cmd(report_path: Path = typer.Argument(..., help="A JSON report written by defib run --json."),
                command: list[str] = typer.Argument(..., help="The same training command, after --."),
                json_path: Optional[Path] = json_option(),
                html_path: Optional[Path] = html_option(),
                runs: int = confirm_runs_option(),
                steps: int = confirm_steps_option()) -> None:
    """Prove the fix of a diagnosis you already have: defib confirm report.json -- python train.py ARGS.

    The same as ``defib run --confirm`` without running the script a first time.
    """
    from defib.report.saved import kind
    from defib.report.text import render
    from defib.stages.launch import Stopped, confirm_fixes

    check_outputs(json_path, html_path)
    report = _saved_report(report_path)
    what = kind(report)
    if what != "run":
        fail(f"{report_path}: not a defib JSON report of a run (a defib {what} report; defib confirm needs the "
             "report of a run: defib run --json)")
    if command and command[0] == "--":  # after a positional, click passes the separator through
        command = command[1:]
    _check_command(command)
    stopped = 0
    try:
        report["confirmed_fixes"] = confirm_fixes(report, command, runs, steps, say=_stderr)
    except Stopped as exc:  # the rerun was stopped: the report as it came, and the status of a stopped program
        stopped = exc.exit_status
    render(report)
    write_reports(report, json_path, html_path)
    raise typer.Exit(stopped or (0 if any(c.get("recovered") for c in report.get("confirmed_fixes") or []) else 1))


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


def _exit_code(report: dict) -> int:
    if report.get("verdict") == "flatlined" or any(f.get("severity") == "error" for f in report.get("findings", [])):
        return 1
    return 0


class FailOn(str, enum.Enum):
    warning = "warning"
    error = "error"


@app.command("check")
def check_cmd(data: Path = typer.Argument(..., help="CSV, TSV, JSON Lines or Parquet file, or a save_to_disk folder."),
              text: str = text_option(),
              label: str = label_option(),
              model: str = model_option(),
              text_pair: Optional[str] = text_pair_option(),
              tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="A tokenizer other than the model's."),
              max_length: Optional[int] = max_length_option(),
              task: Optional[Task] = task_option(),
              json_path: Optional[Path] = json_option(),
              html_path: Optional[Path] = html_option(),
              fail_on: FailOn = typer.Option(FailOn.error, "--fail-on", help="Exit 1 on findings of this severity or worse."),
              delimiter: Optional[str] = typer.Option(None, "--delimiter", help="CSV field separator (default: by extension)."),
              ignore: list[str] = ignore_option(),
              quiet: bool = quiet_option(),
              no_progress: bool = no_progress_option()) -> None:
    """Check a data file before training: truncation, tokenizer, label order, encoding, scale and balance."""
    from defib.evidence.readers import InputError
    from defib.stages.check import check_file

    check_outputs(json_path, html_path)
    if delimiter is not None:
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)  # --delimiter '\\t' means a tab
        if len(delimiter) != 1:
            fail(f"--delimiter must be one character, got {delimiter!r}")
    try:
        diagnosis = check_file(data, text=text, label=label, model=model, text_pair=text_pair, tokenizer=tokenizer,
                               max_length=max_length, task=task.value if task else None, delimiter=delimiter,
                               progress=not (quiet or no_progress), ignore=tuple(c.upper() for c in ignore))
    except InputError as exc:
        fail(str(exc))
    _emit(diagnosis.to_dict(), json_path, html_path, quiet)
    worst = max((f.severity for f in diagnosis.findings), default=None)
    threshold = {"warning": 1, "error": 2}[fail_on.value]
    raise typer.Exit(1 if worst is not None and int(worst) >= threshold else 0)


@app.command("probe")
def probe_cmd(model: str = model_option(),
              data: Optional[Path] = typer.Option(None, "--data", help="Rows to probe with: CSV, TSV, JSON Lines, "
                                                                         "Parquet or a save_to_disk folder."),
              text: str = text_option(),
              text_pair: Optional[str] = text_pair_option(),
              label: str = label_option(),
              task_choice: Optional[Task] = task_option(),
              rows: int = typer.Option(64, "--rows", min=8, max=512, help="Rows to probe with."),
              json_path: Optional[Path] = json_option(),
              html_path: Optional[Path] = html_option(),
              ignore: list[str] = ignore_option(),
              quiet: bool = quiet_option(),
              no_progress: bool = no_progress_option()) -> None:
    """Ask a model directly: initial loss, input sensitivity, gradient flow, overfit one batch, LR sweep, label control."""
    task = task_choice.value if task_choice else None
    if task in ("multilabel", TOKEN_TASK):
        fail(f"--task {task}: defib probe probes regression and classification models only")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here: a hub name must fail fast, not hang
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from defib.evidence.probes.checkpoint import load_classifier
    from defib.evidence.probes.data import ProbeInputError
    from defib.evidence.probes.sample_file import builtin_rows, read_rows
    from defib.evidence.readers import InputError

    check_outputs(json_path, html_path)
    if not Path(model).is_dir():
        fail(f"model folder not found: {model} (defib probe loads a local folder; it never downloads)")
    try:
        if data is not None:
            texts, labels, task = read_rows(data, text, label, text_pair, task=task, rows=rows)
            source = str(data)
            net, tok = load_classifier(model, task, labels)
        else:
            net, tok = load_classifier(model, task, None)
            task = task or ("regression" if net.config.num_labels == 1 else "classification")
            texts, labels, source = builtin_rows(task, net.config.num_labels, rows=rows)
        diagnosis = _probe_with_progress(net, tok, texts, labels, task, source, tuple(c.upper() for c in ignore),
                                         show=not (quiet or no_progress))
    except (InputError, ProbeInputError) as exc:
        fail(str(exc))
    report = diagnosis.to_dict()
    report["model"] = model
    _emit(report, json_path, html_path, quiet)
    raise typer.Exit(_exit_code(report))


def _probe_with_progress(net, tok, texts, labels, task, source, ignore, show=True):
    """Run defib.probe with a progress bar on stderr for the training probes (none unless ``show``)."""
    from rich.console import Console
    from rich.progress import Progress

    from defib.api import probe

    with Progress(console=Console(stderr=True), transient=True, disable=not show) as bar:
        def progress(description: str, total: int):
            task_id = bar.add_task(description, total=total)
            return lambda: bar.advance(task_id)

        return probe(net, tok, texts, labels=labels, task=task, progress=progress, source=source, ignore=ignore)


@app.command("train")
def train_cmd(
        data: Path = typer.Argument(..., help="Training data: CSV, TSV, JSON Lines, Parquet, a save_to_disk folder, "
                                              "or for tagging (--task token_classification) a CoNLL file."),
        text: str = text_option(),
        label: str = label_option(),
        model: str = model_option(),
        out: Path = typer.Option(..., "--out", help="Folder to write the fine-tuned model to (made at the end)."),
        text_pair: Optional[str] = text_pair_option(),
        task: Optional[TrainTask] = typer.Option(None, "--task", help="Default: inferred from the labels "
                                                 "(defib/evidence/task.py); similarity: a sentence-transformers "
                                                 "bi-encoder on --text / --text-pair, scored by cosine."),
        dev: Optional[Path] = typer.Option(None, "--dev", help="Dev file with the same columns (default: hold out "
                                                               "--dev-share of DATA)."),
        dev_share: float = typer.Option(0.1, "--dev-share", help="Share of DATA held out when there is no --dev."),
        epochs: float = typer.Option(4.0, "--epochs", min=0.01, help="Epochs (early stopping may end sooner)."),
        lr: float = typer.Option(5e-5, "--lr", min=0.0, help="Peak learning rate (AdamW)."),
        batch_size: int = typer.Option(16, "--batch-size", min=1, help="Rows per device per micro-batch."),
        max_length: Optional[int] = max_length_option(),
        loss: Optional[str] = typer.Option(None, "--loss", help="mse, huber, ce, weighted-ce, focal, bce, or for "
                                                                "similarity cosent or cosine (default: by task; focal "
                                                                "with class weights if imbalanced; cosent)."),
        class_weights: str = typer.Option("balanced", "--class-weights",
                                          help="balanced (n / (k * count)) or sqrt (count ** -0.5): how "
                                               "weighted-ce and focal weight the classes."),
        scheduler: str = typer.Option("linear", "--scheduler", help="linear, cosine (after warmup) or plateau."),
        warmup: float = typer.Option(0.1, "--warmup", min=0.0, max=0.5, help="Share of steps spent warming up."),
        weight_decay: float = typer.Option(0.01, "--weight-decay", min=0.0, help="AdamW weight decay."),
        clip: float = typer.Option(1.0, "--clip", min=0.0, help="Clip the gradient norm to this (0: off)."),
        accumulation: int = typer.Option(1, "--accumulation", min=1, help="Micro-batches per optimizer step."),
        patience: int = typer.Option(2, "--patience", min=1, help="Evaluations without improvement before stopping."),
        eval_every: int = typer.Option(0, "--eval-every", min=0, help="Evaluate every N steps (0: every epoch)."),
        max_steps: int = max_steps_option(),
        seed: int = typer.Option(42, "--seed", help="Seed for the head, the shuffling and the dev split."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out at the end if it exists."),
        no_check: bool = typer.Option(False, "--no-check", help="Skip defib check on the training data."),
        ignore_check: bool = typer.Option(False, "--ignore-check", help="Train even if defib check finds an error."),
        json_path: Optional[Path] = json_option(),
        html_path: Optional[Path] = html_option(),
        ignore: list[str] = ignore_option(),
        no_progress: bool = no_progress_option()) -> None:
    """Fine-tune a BERT-family model (scores, classes, labels or word tags) the way that does not flatline, watched."""
    from defib.evidence.distributed import is_main_process
    from defib.evidence.readers import InputError
    from defib.train import pipeline
    from defib.train.summary import diagnosis_lines, final_table

    opts = pipeline.TrainOptions(
        data=data, text=text, label=label, model=model, out=out, text_pair=text_pair,
        task=task.value if task else None, dev=dev,
        dev_share=dev_share, epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, loss=loss,
        class_weights=class_weights, scheduler=scheduler, warmup=warmup, weight_decay=weight_decay, clip=clip,
        accumulation=accumulation, patience=patience, eval_every=eval_every, max_steps=max_steps,
        ignore=tuple(c.upper() for c in ignore), seed=seed, resume=resume, overwrite=overwrite, check=not no_check,
        ignore_check=ignore_check, progress=not no_progress)
    check_outputs(json_path, html_path)
    main_rank = is_main_process()
    say = typer.echo if main_rank else (lambda _msg: None)
    try:
        prep = pipeline.prepare(opts)
        pipeline.check_training_data(opts, prep)
    except InputError as exc:
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
    try:
        result = pipeline.train(opts, prep)
    except KeyboardInterrupt:
        if main_rank:
            _stderr(f"defib: interrupted; {pipeline.resume_hint(opts)}")
        raise typer.Exit(130) from None
    if main_rank:
        for line in diagnosis_lines(result.diagnosis):
            typer.echo(line)
        final_table(result)
        typer.echo(f"model written to {out}")
        write_reports(json.loads((out / pipeline.REPORT_FILE).read_text(encoding="utf-8")), json_path, html_path)
    raise typer.Exit(result.diagnosis.exit_code() if result.diagnosis is not None else 0)


@app.command("predict")
def predict_cmd(
        model_dir: Path = typer.Argument(..., help="A folder written by defib train."),
        data: Path = typer.Argument(..., help="Rows to predict: CSV, TSV, JSON Lines, Parquet or a save_to_disk folder."),
        out: Path = typer.Option(..., "--out", help="CSV to write: row, prediction (and class probabilities); a "
                                                     "tagger's: row, word, token, prediction."),
        text: Optional[str] = typer.Option(None, "--text", help="The text column (default: the one trained on)."),
        text_pair: Optional[str] = typer.Option(None, "--text-pair", help="A second text column, for sentence pairs "
                                                                          "(default: the one trained on)."),
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="Rows per forward pass."),
        json_path: Optional[Path] = json_option(),
        html_path: Optional[Path] = html_option(),
        ignore: list[str] = ignore_option(),
        quiet: bool = quiet_option()) -> None:
    """Predict with a model from defib train, on its own scale, and check the predictions."""
    from defib.evidence.readers import InputError
    from defib.train import predict as P

    check_outputs(out, json_path, html_path)
    try:
        loaded = P.load(model_dir)
        col = P.read_inputs(loaded, data, text, text_pair)
    except InputError as exc:
        fail(str(exc))
    result = P.predict(loaded, col, batch_size=batch_size, ignore=tuple(c.upper() for c in ignore))
    try:
        P.write_csv(out, loaded.space, result.values, result.outputs, words=col.texts)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    report = result.diagnosis.to_dict()
    report["predict"].update(model=str(model_dir), source=str(data))
    write_reports(report, json_path, html_path)
    codes = [f.code for f in result.diagnosis.findings]
    warned = f"; warnings {', '.join(codes)}" if quiet and codes else ""  # quiet: the codes alone, on this line
    typer.echo(f"defib predict: {len(result.values)} predictions written to {out}{warned}")
    if not quiet:
        for f in result.diagnosis.findings:
            typer.echo(f"defib: warning [{f.code}] {f.cause}: {f.message}", err=True)
    raise typer.Exit(_exit_code(report))


@app.command("report")
def report_cmd(report_path: Path = typer.Argument(..., metavar="REPORT.json", help="A JSON report written by defib (run, check, probe, "
                                                             "predict, or train's defib_report.json)."),
               json_path: Optional[Path] = json_option(),
               html_path: Optional[Path] = html_option()) -> None:
    """Show a saved JSON report again, in the terminal or as HTML, without rerunning anything."""
    check_outputs(json_path, html_path)
    report = _saved_report(report_path)
    _emit(report, json_path, html_path, quiet=False)
    raise typer.Exit(_exit_code(report))


@app.command("compare")
def compare_cmd(report_a: Path = typer.Argument(..., metavar="A.json", help="The JSON report of one run (say, "
                                                                            "before the fix)."),
                report_b: Path = typer.Argument(..., metavar="B.json", help="The JSON report of another (after it)."),
                html_path: Optional[Path] = html_option()) -> None:
    """Two runs side by side: verdicts, findings, prediction spread and loss against the baseline over the steps."""
    from defib.report.compare import Comparison, Side, render_comparison
    from defib.report.saved import ReportError, load_run

    check_outputs(html_path)
    try:
        comparison = Comparison(Side(str(report_a), load_run(report_a)), Side(str(report_b), load_run(report_b)))
    except ReportError as exc:
        fail(str(exc))
    render_comparison(comparison)
    if html_path is not None:
        from defib.report.compare_html import write_compare_html

        try:
            write_compare_html(comparison, html_path)
        except OSError as exc:
            fail(f"cannot write the report {html_path}: {exc.strerror or exc}")


def _saved_report(path: Path) -> dict:
    """A report file read back and checked (report/saved.py), or a one-line error."""
    from defib.report.saved import ReportError, load

    try:
        return load(path)
    except ReportError as exc:
        fail(str(exc))


STAGE_COMMAND = {"run": "defib run", "check": "defib check", "probe": "defib probe", "predict": "defib predict"}


@app.command("rules")
def rules_cmd() -> None:
    """List every rule: code, cause, title, severity and the command that emits it."""
    from rich.console import Console
    from rich.table import Table

    from defib.rules.base import all_rules

    table = Table("code", "cause", "title", "severity", "emitted by")
    for code, cls in all_rules().items():
        table.add_row(code, cls.cause or "(symptom)", cls.title, str(cls.severity), STAGE_COMMAND[cls.stage])
    Console().print(table)


@app.command("rule")
def rule_cmd(code: str = typer.Argument(..., help="A rule code (L001), or a cause (loss.shape_mismatch).")) -> None:
    """Explain one rule from its docstring, or every rule that names a cause."""
    from rich.console import Console
    from rich.markdown import Markdown

    from defib.causes import CAUSES
    from defib.diagnosis import INTERNAL_CODE
    from defib.rules.base import all_rules

    rules = all_rules()
    if code.upper() == INTERNAL_CODE:
        Console().print(Markdown(f"# {INTERNAL_CODE}: defib internal error\n\n{INTERNAL_EXPLANATION}"))
        return
    if code.lower() in CAUSES:
        chosen = [cls for cls in rules.values() if cls.cause == code.lower()]
    else:
        chosen = [rules[code.upper()]] if code.upper() in rules else []
    if not chosen:
        fail(f"no rule or cause {code!r}; rule codes: {', '.join(rules)}, {INTERNAL_CODE}")
    Console().print(Markdown("\n\n".join(_explain(cls) for cls in chosen)))


INTERNAL_EXPLANATION = ("defib hit an error in its own code and skipped the measurements it was taking; your "
                        "training was not affected. The finding's evidence lists the errors: please report them. "
                        "`--ignore X001` silences it.")


def _explain(cls: Any) -> str:
    """One rule's explanation as markdown: title, cause, severity, stage, then its docstring's sections."""
    from defib.rules.base import SECTIONS

    doc = cls.doc()
    parts = [f"# {cls.code}: {cls.title}",
             f"cause: `{cls.cause or 'symptom'}`, severity: {cls.severity}, emitted by `{STAGE_COMMAND[cls.stage]}`",
             doc.get("summary", "")]
    for section in SECTIONS:
        if doc.get(section):
            text = doc[section]
            if section == "Example":  # keep the example's lines apart (markdown would join them)
                text = "  \n".join(text.splitlines())
            parts.append(f"## {section}\n{text}")
    return "\n\n".join(parts)


if __name__ == "__main__":
    app()
