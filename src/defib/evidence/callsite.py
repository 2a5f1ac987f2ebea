"""Find the line of the user's own code behind a call that defib intercepted.

A finding is only useful if it says *where*: the loss call, the optimizer's
construction, the DataLoader. When a hook fires, the stack holds frames from
torch, transformers, accelerate, Lightning and defib itself; the user's frame
is the innermost one outside all installed libraries.
"""

from __future__ import annotations

import ast
import functools
import linecache
import os
import sys
import sysconfig
from typing import Callable

from defib.signals.common import Where

_LIB_ROOTS = tuple(
    os.path.realpath(p) + os.sep
    for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], sysconfig.get_paths()["stdlib"]}
)
_DEFIB_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep


@functools.lru_cache(maxsize=4096)
def is_user_file(filename: str) -> bool:
    """True for a real source file that is neither a library nor defib."""
    if not filename or filename.startswith("<"):
        return False
    path = os.path.realpath(filename)
    if path.startswith(_DEFIB_ROOT) or path.startswith(_LIB_ROOTS):
        return False
    return "site-packages" not in path and "dist-packages" not in path


def user_frame(skip: int = 1):
    """The innermost frame on the stack that belongs to the user's code."""
    frame = sys._getframe(skip)
    while frame is not None:
        if is_user_file(frame.f_code.co_filename):
            return frame
        frame = frame.f_back
    return None


def where_here(keyword: str | None = None, skip: int = 2, value: object = None) -> Where | None:
    """A :class:`Where` for the user's line that led to this call.

    With ``keyword``, point at the line that set that argument's value
    (``lr=``, ``shuffle=``; see :mod:`defib.evidence.provenance`), which is
    the line a user would edit; ``value`` is the value the run used, if known.
    """
    frame = user_frame(skip)
    if frame is None:
        return None
    filename, line = frame.f_code.co_filename, frame.f_lineno
    if keyword:
        from defib.evidence.provenance import origin_line

        line = origin_line(filename, line, keyword, value)
    return make_where(filename, line)


def where_picked(fits: Callable[[object], bool], skip: int = 2) -> Where | None:
    """A :class:`Where` for the line that built the first argument of the user's call that led here (the line
    that picked the vector a head reads: ``pooled = out.hidden_states[0][:, 0]`` before ``head(pooled)``).

    Only a variable whose value ``fits`` (the value the call received, or one a
    dropout made it from) is followed; ``head(features(encoder, enc))`` is followed
    into ``features`` when the script defines it, ``head(pool(outputs))`` with
    ``pool`` from elsewhere stays at its line.
    """
    frame = user_frame(skip)
    if frame is None:
        return None
    from defib.evidence.provenance import argument_line

    names = {name for name, value in frame.f_locals.items() if fits(value)}
    return make_where(frame.f_code.co_filename, argument_line(frame.f_code.co_filename, frame.f_lineno, names))


def where_made(method: str, skip: int = 2) -> Where | None:
    """A :class:`Where` for the line that built the value the user's ``x.method()`` call acts on.

    ``loss.backward()`` on a tensor without a graph: the line to edit is
    ``loss = torch.tensor(...)``, not the backward call. None when the
    assignment cannot be found unambiguously.
    """
    frame = user_frame(skip)
    if frame is None:
        return None
    from defib.evidence.provenance import receiver_line

    line = receiver_line(frame.f_code.co_filename, frame.f_lineno, method)
    return make_where(frame.f_code.co_filename, line) if line else None


def make_where(filename: str, line: int) -> Where:
    code = linecache.getline(filename, line).strip()
    try:
        shown = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        shown = filename
    if shown.startswith(".." + os.sep + ".."):
        shown = filename
    return Where(file=shown, line=line, code=code)


@functools.lru_cache(maxsize=256)
def _tree(filename: str) -> ast.AST | None:
    try:
        with open(filename, encoding="utf-8") as fh:
            return ast.parse(fh.read(), filename)
    except (OSError, SyntaxError, ValueError):
        return None
