"""How every ``defib`` command ends on an error: one line on stderr, at most MAX_ERROR_LINE characters, exit 2.

The command group (:class:`OneLineErrors`) catches usage errors, bad input and
anything a command lets escape; the commands themselves call :func:`fail`.
"""

from __future__ import annotations

import os
import sys
import unicodedata

import typer
from typer.core import TyperGroup

# click's exception base, reached through typer's public API (typer may vendor its own click)
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


MAX_ERROR_LINE = 300  # characters of an error line: a 50 MB header or cell is quoted as a short excerpt
DEBUG_ENV = "DEFIB_DEBUG"  # set to 1: an unexpected exception shows its traceback instead of one line


class OneLineErrors(TyperGroup):
    """Every error as one line on stderr, exit 2, like ``fail``: usage errors, bad input, unexpected exceptions.

    Bad input (:class:`~defib.evidence.readers.InputError`), a file that cannot
    be read or written (``OSError``) and anything else a command lets escape
    end here, so no command shows a traceback (``DEFIB_DEBUG=1`` shows it).
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _CLICK_ERROR as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                sys.exit(2)  # the help text was already printed
            hint = f" (see {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) is not None else ""
            _stderr(error_line(f"{exc.format_message()}{hint}"))
            sys.exit(exc.exit_code)
        except typer.Abort:  # click's form of KeyboardInterrupt: 128 + SIGINT, as a shell reports it
            typer.echo("defib: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence of the one-line promise
            if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            _stderr(error_line(_unexpected(exc)))
            sys.exit(2)
        sys.exit(code if isinstance(code, int) else 0)


def _unexpected(exc: Exception) -> str:
    """An exception no command turned into a message: a file error says which file, anything else its type."""
    from defib.evidence.readers import InputError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    if isinstance(exc, InputError):
        return text
    return f"{type(exc).__name__}: {text} (an unexpected error; {DEBUG_ENV}=1 shows where)"


def error_line(message: str) -> str:
    """``defib: error: MESSAGE`` on one line of at most MAX_ERROR_LINE characters, control characters escaped.

    Messages quote the user's data (a column name, a label, a path): a newline
    or an escape sequence in it must not break the line or reach the terminal,
    and a 50 MB "name" must not become a 50 MB line. The middle is cut, so the
    line keeps both what is wrong (its start) and what to do (its end).
    """
    text = "defib: error: " + "".join(_escaped(ch) for ch in message)
    if len(text) <= MAX_ERROR_LINE:
        return text
    cut = " [...] "
    tail = (MAX_ERROR_LINE - len(cut)) // 3
    return text[:MAX_ERROR_LINE - len(cut) - tail] + cut + text[-tail:]


def _escaped(ch: str) -> str:
    if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):  # controls, bidi overrides, line separators
        return ascii(ch)[1:-1]
    return ch


def _stderr(line: str) -> None:
    typer.echo(line, err=True)


def fail(message: str) -> None:
    """A one-line usage or input error: exit 2, no traceback."""
    _stderr(error_line(message))
    raise typer.Exit(2)
