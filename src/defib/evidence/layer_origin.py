"""Follow the layer a pooled vector is read from back to the line that chose that layer.

``features["all_layer_embeddings"][self.layer][:, 0]`` reads [CLS] from a list
of hidden states; when the vector is the same for every text (M004), the layer
is the embedding layer's output, and the line a person edits is not the
pooling's but the one that chose the layer: ``POOL_LAYER = 0`` at the top of
the script, passed as ``LayerCLSPooling(POOL_LAYER)`` and kept as
``self.layer = layer``; or ``pool_layer: int = 0`` in a config, or an
``add_argument("--pool-layer", default=0)``.

Static and conservative like :mod:`.provenance`: each hop is taken only when it
is unambiguous in the file (one assignment of the attribute, one call of the
class, one assignment of the name); anything else returns None and the finding
keeps the pooling's line.
"""

from __future__ import annotations

import ast
import os

from defib.evidence.callsite import _tree, make_where
from defib.evidence.provenance import _MISSING, _attr_origin, _key_of, _last_write, _literal, _name_origin, _scope
from defib.signals.common import Where

# what a list of every layer's hidden states is called: transformers' outputs, sentence-transformers' features
HIDDEN_LISTS = frozenset({"hidden_states", "all_layer_embeddings", "encoder_hidden_states"})
HOPS = 4  # statements followed back from the pooling line, and hops from the index to its origin


def _hidden_list(node: ast.AST) -> bool:
    """``out.hidden_states``, ``features["all_layer_embeddings"]``, a variable ``hidden_states``."""
    if isinstance(node, ast.Attribute):
        return node.attr in HIDDEN_LISTS
    if isinstance(node, ast.Name):
        return node.id in HIDDEN_LISTS
    return _key_of(node) in HIDDEN_LISTS


def _statements(tree: ast.AST, line: int) -> list[ast.stmt]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.stmt) and n.lineno == line
            and not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def _layer_index(tree: ast.AST, line: int) -> tuple[ast.expr, int] | None:
    """The index of a hidden-state list read on ``line``, or in the statements that wrote the names it reads
    (``hidden = features["all_layer_embeddings"][self.layer]`` before ``... = hidden[:, 0]``), with its line."""
    frontier, seen = [line], set()
    for _ in range(HOPS):
        nxt = []
        for ln in frontier:
            if ln in seen:
                continue
            seen.add(ln)
            for stmt in _statements(tree, ln):
                for node in ast.walk(stmt):
                    if isinstance(node, ast.Subscript) and _hidden_list(node.value) \
                            and not isinstance(node.slice, (ast.Slice, ast.Tuple)):
                        return node.slice, ln
                nxt += [_last_write(tree, ln, n.id) for n in ast.walk(stmt)
                        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        frontier = [ln for ln in nxt if ln]
    return None


def _parameters(scope: ast.AST) -> set[str]:
    if not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return set()
    a = scope.args
    return {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs}


def _enclosing_class(tree: ast.AST, line: int) -> ast.ClassDef | None:
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.lineno <= line <= (node.end_lineno or node.lineno):
            if best is None or node.lineno > best.lineno:
                best = node
    return best


def _self_assignments(cls: ast.ClassDef, attr: str) -> list[tuple[ast.AST, ast.expr]]:
    """Every ``self.attr = value`` in the class's methods, with the method it is in."""
    found = []
    for method in cls.body:
        if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(method):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Attribute) and t.attr == attr and isinstance(t.value, ast.Name)
                       and t.value.id == "self" for t in targets):
                    found.append((method, node.value))
    return found


def _constructor_argument(tree: ast.AST, cls: ast.ClassDef, method: ast.AST, param: str) -> ast.expr | None:
    """What the one call of ``cls`` in the file passes for ``__init__``'s ``param``, or the parameter's default."""
    if getattr(method, "name", None) != "__init__":
        return None
    args = method.args
    names = [a.arg for a in args.posonlyargs + args.args][1:]  # without self
    if param not in names:
        return None
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id == cls.name]
    if len(calls) != 1:
        return None
    call, at = calls[0], names.index(param)
    passed = next((k.value for k in call.keywords if k.arg == param), None)
    if passed is None and at < len(call.args) and not any(isinstance(a, ast.Starred) for a in call.args[:at + 1]):
        passed = call.args[at]
    if passed is None:
        defaults = args.defaults
        offset = len(names) - len(defaults)
        passed = defaults[at - offset] if at >= offset else None
    return passed


def _origin(tree: ast.AST, index: ast.expr, line: int, depth: int = HOPS) -> int | None:
    """The line that set the value ``index`` (read on ``line``) holds."""
    if depth == 0:
        return None
    if _literal(index) is not _MISSING:
        return index.lineno
    if isinstance(index, ast.Name):
        if index.id in _parameters(_scope(tree, line)) and not _last_write(tree, line, index.id):
            return None  # the function's caller chose it: not followed
        found = _name_origin(tree, line, index.id)
        if not found:
            return None
        value = next((s.value for s in _statements(tree, found)
                      if isinstance(s, (ast.Assign, ast.AnnAssign)) and s.value is not None), None)
        if value is not None and _literal(value) is _MISSING:  # layer = cfg.pool_layer: one hop further
            return _origin(tree, value, found, depth - 1) or found
        return found
    if isinstance(index, ast.Attribute) and isinstance(index.value, ast.Name) and index.value.id == "self":
        cls = _enclosing_class(tree, line)
        sets = _self_assignments(cls, index.attr) if cls is not None else []
        if len(sets) != 1:
            return None
        method, value = sets[0]
        if isinstance(value, ast.Name) and value.id in _parameters(method):  # self.layer = layer
            passed = _constructor_argument(tree, cls, method, value.id)
            return None if passed is None else _origin(tree, passed, passed.lineno, depth - 1) or passed.lineno
        return _origin(tree, value, value.lineno, depth - 1) or value.lineno
    if isinstance(index, ast.Attribute):  # cfg.pool_layer, args.pool_layer
        return _attr_origin(tree, index.attr, None)
    return None


def layer_where(where: Where | None) -> Where | None:
    """The line that chose the hidden layer the pooled vector at ``where`` is read from; None when the pooling does
    not index a list of hidden states, or the index cannot be followed unambiguously."""
    if where is None:
        return None
    filename = where.file if os.path.isabs(where.file) else os.path.abspath(where.file)
    tree = _tree(filename)
    if tree is None:
        return None
    found = _layer_index(tree, where.line)
    if found is None:
        return None
    line = _origin(tree, *found)
    return make_where(filename, line) if line and line != where.line else None
