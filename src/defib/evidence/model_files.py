"""Check a model folder's files before anything loads them, so a damaged one is one line, not a traceback.

``train``, ``predict`` and ``probe`` load the user's model folder with
transformers, which fails on a damaged file deep inside (a safetensors
header error, a JSON decode error) and, for ``train``, only after the data
check ran. These checks read a few bytes of each file: ``config.json`` must
be a JSON object, and every ``.safetensors`` file must have a readable header
whose tensors lie inside the file (a download cut short fails here).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from defib.evidence.readers import InputError, first_line

MAX_HEADER_BYTES = 100 << 20   # safetensors' own limit on the JSON header


def check_model_files(folder: str | Path) -> None:
    """Raise :class:`InputError` naming the first damaged file of ``folder`` (a no-op for files that are absent)."""
    folder = Path(folder)
    read_json_object(folder / "config.json")
    for weights in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(weights)
        if problem:
            raise InputError(f"{weights}: damaged safetensors file ({problem}); save or download the model again")


def read_json_object(path: Path) -> dict | None:
    """The JSON object in ``path`` (None if there is no such file); a damaged file is an :class:`InputError`."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: holds a JSON {type(data).__name__}, not an object")
    return data


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's layout, or None: 8-byte header size, JSON header, tensor offsets."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than a header"
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, MAX_HEADER_BYTES):
            return f"its header claims {n:,} bytes of a {size:,}-byte file"
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            return "its header is not JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            return f"tensor {name[:60]!r} has no valid data offsets"
        end = max(end, offsets[1])
    if 8 + n + end > size:
        return f"truncated: its tensors need {8 + n + end:,} bytes, the file has {size:,}"
    return None
