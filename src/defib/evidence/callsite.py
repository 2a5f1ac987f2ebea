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

from defib.rules.base import Where

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


def where_here(keyword: str | None = None, skip: int = 2) -> Where | None:
    """A :class:`Where` for the user's line that led to this call.

    With ``keyword``, and when that line opens a call spanning several lines,
    point at the line of that keyword argument (``lr=``, ``shuffle=``), which
    is the line a user would edit.
    """
    frame = user_frame(skip)
    if frame is None:
        return None
    filename, line = frame.f_code.co_filename, frame.f_lineno
    if keyword:
        line = keyword_line(filename, line, keyword)
    return make_where(filename, line)


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


def keyword_line(filename: str, line: int, keyword: str) -> int:
    """Line of ``keyword=`` in the innermost call that spans ``line``; else ``line``."""
    tree = _tree(filename)
    if tree is None:
        return line
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.lineno <= line <= (node.end_lineno or node.lineno):
            for kw in node.keywords:
                if kw.arg == keyword:
                    span = (node.end_lineno or node.lineno) - node.lineno
                    if best is None or span < best[0]:
                        best = (span, kw.value.lineno)
    return best[1] if best else line
