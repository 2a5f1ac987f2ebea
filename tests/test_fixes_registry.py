"""A new fix is one file: ``defib/fixes/<area>/<cause name>.py``, one registered class, found by walking the package.

The registry is filled by import side effects, so nothing else would notice a
fix file that registers two classes, a fix filed under the wrong cause, or a
cause renamed in ``causes.toml`` while its fix still names the old one.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import defib.fixes
from defib.causes import CAUSES
from defib.fixes.base import _load

FIXES_DIR = Path(defib.fixes.__file__).parent
AREAS = sorted(p.name for p in FIXES_DIR.iterdir() if (p / "__init__.py").exists())
SHARED = {"__init__.py", "common.py"}


def test_every_fix_names_a_known_cause():
    unknown = {cause: cls.__name__ for cause, cls in _load().items() if cause not in CAUSES or cls.cause != cause}
    assert not unknown, unknown


def test_each_fix_file_registers_one_fix_for_the_cause_it_is_named_after():
    by_module = Counter(cls.__module__ for cls in _load().values())
    files = [p for area in AREAS for p in sorted((FIXES_DIR / area).glob("*.py")) if p.name not in SHARED]
    assert files
    wrong = []
    for path in files:
        module = f"defib.fixes.{path.parent.name}.{path.stem}"
        cause = f"{path.parent.name}.{path.stem}"
        if by_module[module] != 1:
            wrong.append(f"{module} registers {by_module[module]} fixes")
        elif _load().get(cause) is None or _load()[cause].__module__ != module:
            wrong.append(f"{module} does not hold the fix for {cause}")
    assert not wrong, wrong
    assert sum(by_module.values()) == len(files), "a fix is registered outside fixes/<area>/<cause>.py"


def test_each_fix_says_what_it_changes():
    """The docstring's first line is the default description the report shows."""
    missing = [cls.__name__ for cls in _load().values() if not (cls.__dict__.get("__doc__") or "").strip()]
    assert not missing, missing


def test_fix_areas_do_not_import_each_other():
    """What two areas share lives in ``defib.fixes.base``, so an area can move or go without touching another."""
    wrong = []
    for area in AREAS:
        for path in sorted((FIXES_DIR / area).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                    [a.name for a in node.names] if isinstance(node, ast.Import) else []
                for name in names:
                    parts = name.split(".")
                    if parts[:2] == ["defib", "fixes"] and len(parts) > 2 and parts[2] in AREAS and parts[2] != area:
                        wrong.append(f"{area}/{path.name} imports {name}")
    assert not wrong, wrong
