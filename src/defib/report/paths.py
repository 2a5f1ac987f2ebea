"""Whether an output path can be written, asked before any work is done.

A report, a predictions file or a model folder that cannot be written must
fail in the first second, with one line, not after minutes of work (and not
with half of the outputs written). The one sure test is to make a file
where the output will go: a temporary file that vanishes when closed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def unwritable(path: Path, *, folder: bool = False) -> str | None:
    """Why a file (``folder=True``: a folder) cannot be created at ``path``, or None if it can.

    A file's folder must exist; a folder's missing parents are made when it
    is written (``defib train --out``), so the nearest existing one is tried.
    """
    if not folder and path.is_dir():
        return "it is a directory"
    if folder and path.exists() and not path.is_dir():
        return "it exists and is not a folder"
    parent = path.absolute().parent
    while folder and not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a folder" if parent.exists() else f"no folder {parent}"
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        return f"cannot make a file in {parent} ({exc.strerror or exc})"
    return None
