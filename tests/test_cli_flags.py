"""One flag vocabulary: a flag two commands share means the same in both, and README.md's one table says so.

The test walks the typer app's commands (no command runs): every flag that
more than one command declares must have the same help, type, default and
bounds everywhere, except the few listed in ``MAY_DIFFER`` with the reason.
The old spellings documented before the vocabulary was made one still parse,
to the new flag's value, and stay out of ``--help``.
"""

from __future__ import annotations

import copy
import enum
import re
from pathlib import Path

import pytest
import typer

from defib.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
COMMANDS = ("run", "confirm", "check", "probe", "train", "predict", "report", "compare")

# flag -> {command: why it may differ there}
MAY_DIFFER = {
    "--text": {"predict": "defaults to the column the model was trained on"},
    "--text-pair": {"predict": "defaults to the column the model was trained on"},
    "--batch-size": {"predict": "inference holds no gradients: 64 rows, where training takes 16"},
    "--out": {"predict": "what the command makes: a predictions CSV there, a model folder in train"},
    "--task": {"train": "the tasks a label column implies, and a bi-encoder's similarity, which none implies"},
}


def _group():
    return typer.main.get_command(app)


def _options(command) -> dict[str, object]:
    """Visible long flag -> option (hidden aliases left out)."""
    return {opt: p for p in command.params if not getattr(p, "hidden", False)
            for opt in p.opts if opt.startswith("--") and p.param_type_name == "option"}


def _kind(option) -> object:
    """The option's value type: typer 0.2x keeps the annotation, older typer a click type."""
    desc = getattr(option, "type_descriptor", None)
    return desc.annotation if desc is not None else option.type


def _choices(option) -> tuple:
    kind = _kind(option)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return tuple(member.value for member in kind)
    return tuple(getattr(kind, "choices", ()) or ())


def _signature(option) -> tuple:
    return (option.help, repr(_kind(option)), _choices(option), getattr(option, "min", None),
            getattr(option, "max", None), repr(option.default), option.required, option.multiple, option.is_flag)


def test_every_shared_flag_means_the_same_everywhere():
    group = _group()
    seen: dict[str, dict[str, tuple]] = {}
    for name in COMMANDS:
        for flag, option in _options(group.commands[name]).items():
            seen.setdefault(flag, {})[name] = _signature(option)
    shared = {flag: by_cmd for flag, by_cmd in seen.items() if len(by_cmd) > 1}
    assert {"--json", "--html", "--ignore", "--quiet", "--max-steps", "--task", "--max-length", "--text"} <= set(shared)
    for flag, by_cmd in shared.items():
        allowed = MAY_DIFFER.get(flag, {})
        kept = {cmd: sig for cmd, sig in by_cmd.items() if cmd not in allowed}
        assert len(set(kept.values())) == 1, f"{flag} differs across {sorted(kept)}: {kept}"


def test_the_diagnosing_commands_share_the_report_flags():
    group = _group()
    for name in ("run", "check", "probe", "train", "predict"):
        assert {"--json", "--html", "--ignore"} <= set(_options(group.commands[name])), name
    for name in ("run", "check", "probe", "predict"):
        assert "--quiet" in _options(group.commands[name]), name
    for name in ("run", "train"):
        assert "--max-steps" in _options(group.commands[name]), name


def test_task_is_one_enum_of_the_task_module():
    from defib.evidence.task import TASKS

    group = _group()
    for name in ("check", "probe"):
        assert _choices(_options(group.commands[name])["--task"]) == TASKS, name
    assert _choices(_options(group.commands["train"])["--task"]) == (*TASKS, "similarity")


def _parsed(command: str, args: list[str]) -> dict[str, object]:
    """The values the command's function would be called with (the function itself is not run)."""
    cmd = copy.copy(_group().commands[command])
    got: dict[str, object] = {}
    cmd.callback = lambda **values: got.update(values)
    with cmd.make_context(command, args) as ctx:
        cmd.invoke(ctx)
    return got


@pytest.mark.parametrize("command, args, expected", [
    ("run", ["--steps", "5", "python", "x.py"], {"steps": 5}),
    ("run", ["--steps=7", "python", "x.py", "--steps", "9"], {"steps": 7, "command": ["python", "x.py", "--steps", "9"]}),
    ("run", ["--max-steps", "6", "python", "x.py"], {"steps": 6}),
    ("run", ["python", "x.py"], {"steps": 0, "confirm_runs": 2, "confirm_steps": 0}),
    ("confirm", ["--runs", "3", "--steps", "4", "r.json", "--", "python", "x.py"], {"runs": 3, "steps": 4}),
    ("confirm", ["--confirm-runs", "1", "--confirm-steps", "8", "r.json", "--", "python", "x.py"], {"runs": 1, "steps": 8}),
    ("confirm", ["r.json", "--", "python", "x.py"], {"runs": 2, "steps": 0}),
])
def test_old_spellings_still_parse(command, args, expected):
    got = _parsed(command, args)
    assert {k: got[k] for k in expected} == expected
    assert not any("__as_" in k for k in got)  # the aliases' own slots never reach the command


def test_old_spellings_are_hidden_but_bounded():
    group = _group()
    hidden = {opt for p in group.commands["confirm"].params if getattr(p, "hidden", False) for opt in p.opts}
    assert hidden == {"--runs", "--steps"}
    with pytest.raises(typer.BadParameter.__mro__[1]):  # click's UsageError family: --runs keeps min=1
        _parsed("confirm", ["--runs", "0", "r.json", "--", "python", "x.py"])


def _readme_table() -> dict[str, set[str]]:
    """README.md's flag table: flag -> the commands it lists."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Flags", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`--"):
            flag = re.match(r"`(--[a-z-]+)", cells[0]).group(1)
            rows[flag] = set(re.findall(r"[a-z]+", cells[2]))
    return rows


def test_readme_table_lists_every_shared_flag_on_its_commands():
    group = _group()
    declared: dict[str, set[str]] = {}
    for name in COMMANDS:
        for flag in _options(group.commands[name]):
            declared.setdefault(flag, set()).add(name)
    table = _readme_table()
    for flag, commands in declared.items():
        if len(commands) > 1:
            assert table.get(flag) == commands, f"README's row for {flag}: {table.get(flag)}, declared on {commands}"
    for flag, commands in table.items():
        assert commands == declared.get(flag), f"README lists {flag} on {commands}, declared on {declared.get(flag)}"
