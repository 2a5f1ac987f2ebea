"""The one vocabulary of defib's command-line flags: each shared flag is declared here, once.

A flag that two commands share means the same there, with the same type and
default; README.md's "Flags" table lists them, and tests/test_cli_flags.py
walks every command to keep it so. The names follow what the flag does, not
which command it sits on: ``--max-steps`` stops training after N optimizer
steps wherever training runs (``run``, ``train``); the reruns of a
confirmation are ``--confirm-runs`` and ``--confirm-steps`` in ``run`` and
``confirm`` alike. Spellings that were documented before (``run --steps``,
``confirm --runs/--steps``) still parse, hidden from ``--help``, since users'
scripts may pass them (:func:`aliased`).
"""

from __future__ import annotations

import copy
import enum
from typing import Any

import typer
from typer.core import TyperCommand

from defib.evidence.task import TASKS
from defib.integrations.trackers import LOG_TO
from defib.train.labels import TRAIN_TASKS

Task = enum.Enum("Task", {name: name for name in TASKS}, type=str)  # str mixin: typer shows the values
TrainTask = enum.Enum("TrainTask", {name: name for name in TRAIN_TASKS}, type=str)  # and a bi-encoder's similarity
LogTo = enum.Enum("LogTo", {name: name for name in LOG_TO}, type=str)


def json_option() -> Any:
    return typer.Option(None, "--json", help="Write the JSON report here.")


def html_option() -> Any:
    return typer.Option(None, "--html", help="Write the report as one self-contained HTML file with plots.")


def quiet_option() -> Any:
    return typer.Option(False, "--quiet", help="Print only the verdict line.")


def no_progress_option() -> Any:
    return typer.Option(False, "--no-progress", help="No progress bars.")


def ignore_option() -> Any:
    return typer.Option([], "--ignore", help="A rule code to leave out of the diagnosis, and so of the verdict "
                                             "(any case; repeat for more).")


def max_steps_option() -> Any:
    return typer.Option(0, "--max-steps", min=0, help="Stop training after N optimizer steps (0: run to the end).")


def log_to_option() -> Any:
    return typer.Option(LogTo.auto, "--log-to", help="Also write defib's series and findings into this experiment "
                                                     "tracker's run (auto: the TensorBoard, MLflow or W&B run the "
                                                     "script already logs to; none: nowhere).")


def confirm_runs_option() -> Any:
    return typer.Option(2, "--confirm-runs", min=1, help="At most this many reruns to confirm a fix.")


def confirm_steps_option() -> Any:
    return typer.Option(0, "--confirm-steps", min=0, help="Optimizer steps per confirmation rerun (0: as many as "
                                                          "the run observed, at most 200).")


def model_option() -> Any:
    return typer.Option(..., "--model", help="The model folder (or a hub name in the local cache; probe: a folder).")


def text_option() -> Any:
    return typer.Option("text", "--text", help="The text column.")


def text_pair_option() -> Any:
    return typer.Option(None, "--text-pair", help="A second text column, for sentence pairs.")


def label_option() -> Any:
    return typer.Option("label", "--label", help="The label column (a score, a class, or a list of labels).")


def task_option() -> Any:
    return typer.Option(None, "--task", help="Default: inferred from the labels (defib/evidence/task.py).")


def max_length_option() -> Any:
    return typer.Option(None, "--max-length", help="Truncate inputs to N tokens (default: the tokenizer's "
                                                   "model_max_length, capped by the model's position embeddings).")


def aliased(old_to_new: dict[str, str]) -> type[TyperCommand]:
    """A command class that also accepts each old spelling for its new flag, hidden from ``--help``.

    The old spelling is a hidden copy of the option under its own name, and a
    value given through it replaces the new option's before the command runs:
    two options sharing one name would depend on the click version's rules.
    """
    class Aliased(TyperCommand):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.aliases: list[tuple[str, str]] = []  # (the hidden copy's name, the option's name)
            for old, new in old_to_new.items():
                option = next(p for p in self.params if new in p.opts)
                alias = copy.copy(option)
                alias.name = f"{option.name}__as_{old.lstrip('-').replace('-', '_')}"
                alias.opts, alias.secondary_opts, alias.hidden = [old], [], True
                self.params.append(alias)
                self.aliases.append((alias.name, option.name))

        def invoke(self, ctx: Any) -> Any:
            for alias, name in self.aliases:
                value = ctx.params.pop(alias)
                if ctx.get_parameter_source(alias).name == "COMMANDLINE":
                    ctx.params[name] = value
            return super().invoke(ctx)

    return Aliased
