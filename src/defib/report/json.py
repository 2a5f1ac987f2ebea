"""The JSON report: the contract in docs/architecture.md, written atomically."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, TextIO


def _clean(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) with None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(_clean(report), indent=2, allow_nan=False)


def write(report: dict[str, Any], path: str | os.PathLike) -> None:
    write_atomic(dumps(report), path)


def write_atomic(text: str, path: str | os.PathLike) -> None:
    """Write via a temporary file and rename, so a reader never sees half a report."""
    with atomic_file(path) as fh:
        fh.write(text)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, newline: str | None = None) -> Iterator[TextIO]:
    """A text file that appears at ``path`` whole or not at all, with the mode any new file gets.

    ``mkstemp`` makes its file 0600; a report or a predictions file is not a
    secret, so it gets what ``open`` would give it: 0666 less the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process' umask (reading it means setting it: put it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
