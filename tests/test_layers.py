"""The package's layers import only downward: evidence -> signals -> rules -> diagnosis -> report, never back.

``docs/architecture.md`` draws the flow; this test is what keeps it true. It
parses every module under ``src/defib`` (no import is executed), resolves each
``import`` to a defib module, and fails on an import into a higher layer, on a
rule area reaching into another area, and on an import cycle among the
imports that run at module load.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# lowest first; a module may import its own layer (sideways) or any lower one
LAYERS: list[tuple[str, ...]] = [
    ("defib._version", "defib.signals", "defib.causes", "defib.demos"),
    ("defib.evidence",),
    ("defib.rules",),
    ("defib.diagnosis",),
    ("defib.fixes", "defib.report"),
    ("defib.stages",),
    ("defib.api", "defib.integrations", "defib.train", "defib.cli", "defib._boot", "defib"),
]
# the bottom packages are leaves: each imports nothing of defib but itself
LEAVES = LAYERS[0]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "defib").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _package_of(name: str) -> str:
    """The entry of LAYERS that owns a module (the longest matching prefix)."""
    best = ""
    for layer in LAYERS:
        for pkg in layer:
            if (name == pkg or name.startswith(pkg + ".")) and len(pkg) > len(best):
                best = pkg
    return best


def _layer(name: str) -> int:
    pkg = _package_of(name)
    return next(i for i, layer in enumerate(LAYERS) if pkg in layer)


def _resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The defib modules an import statement loads (``from pkg import mod`` counts as ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "defib"]
    if node.level:
        base = importer.split(".")
        if MODULES[importer].name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "defib":
        return []
    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
    return subs or [target]


def _imports(name: str, top_level_only: bool) -> list[tuple[int, str]]:
    tree = ast.parse(MODULES[name].read_text("utf-8"))
    nodes = _top_level(tree.body) if top_level_only else ast.walk(tree)
    return [(n.lineno, t) for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom)) for t in _resolve(name, n)]


def _top_level(body: list[ast.stmt]):
    """Statements that run when the module loads: not in functions, not under ``if TYPE_CHECKING``."""
    for stmt in body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            continue
        if isinstance(stmt, (ast.If, ast.Try)):
            yield from _top_level(stmt.body + stmt.orelse + getattr(stmt, "finalbody", []))
            for handler in getattr(stmt, "handlers", []):
                yield from _top_level(handler.body)
        elif not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield stmt


def test_every_module_has_a_layer():
    assert all(_package_of(name) for name in MODULES), [n for n in MODULES if not _package_of(n)]


def test_imports_only_go_down():
    wrong = []
    for name in MODULES:
        for line, target in _imports(name, top_level_only=False):
            if _layer(target) > _layer(name):
                wrong.append(f"{MODULES[name].relative_to(SRC)}:{line} imports {target} (a higher layer)")
            elif _package_of(name) in LEAVES and _package_of(target) != _package_of(name):
                wrong.append(f"{MODULES[name].relative_to(SRC)}:{line} imports {target} (a leaf imports only itself)")
    assert not wrong, "\n".join(wrong)


def test_rule_areas_do_not_import_each_other():
    """A rule reads signals and the shared rule modules (base, thresholds, measures, fmt), never another area."""
    wrong = []
    for name in MODULES:
        parts = name.split(".")
        if len(parts) < 4 or parts[1] != "rules":
            continue
        for line, target in _imports(name, top_level_only=False):
            t = target.split(".")
            if len(t) >= 4 and t[1] == "rules" and t[2] != parts[2]:
                wrong.append(f"{MODULES[name].relative_to(SRC)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = {name: sorted({t for _, t in _imports(name, top_level_only=True) if t in MODULES and t != name})
             for name in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for name in graph:
        if name not in state:
            cycle = visit(name)
            assert cycle is None, " -> ".join(cycle)
