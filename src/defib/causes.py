"""The root-cause codes defib names, read from the packaged ``causes.toml``.

The file is the project's own copy of ``shared/spec/causes.toml`` (defib must
run without the shared folder); a test keeps the two identical. Its tables are
nested (``[data.truncation]``), so they are flattened to dotted codes here.
"""

from __future__ import annotations

import tomllib
from importlib import resources


def _flatten(tables: dict) -> dict[str, dict]:
    return {f"{area}.{name}": body for area, names in tables.items() for name, body in names.items()}


CAUSES: dict[str, dict] = _flatten(tomllib.loads(resources.files("defib").joinpath("causes.toml").read_text("utf-8")))
