"""Follow a keyword argument back to the line that set its value.

``AdamW(params, lr=cfg.lr)`` is where the optimizer is built, but the line a
person edits is ``lr: float = 4e-8`` in the config class, or
``mask = (ids == pad).long()`` where the mask passed as ``attention_mask=mask``
was computed. Static and conservative: a value is followed only to an
assignment that is unambiguous in the file (the last one before the call in
the same function, or the only one in the file), to a config field, a
dataclass default or an ``add_argument("--lr", default=...)``; anything else
stays at the call.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from defib.evidence.callsite import _tree


def _call_value(tree: ast.AST, line: int, keyword: str) -> ast.expr | None:
    """The value node of ``keyword=`` in the innermost call spanning ``line``."""
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.lineno <= line <= (node.end_lineno or node.lineno):
            for kw in node.keywords:
                if kw.arg == keyword:
                    span = (node.end_lineno or node.lineno) - node.lineno
                    if best is None or span < best[0]:
                        best = (span, kw.value)
    return best[1] if best else None


def _scope(tree: ast.AST, line: int) -> ast.AST:
    """The innermost function containing ``line`` (else the module)."""
    best, span = tree, None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                node.lineno <= line <= (node.end_lineno or node.lineno):
            size = (node.end_lineno or node.lineno) - node.lineno
            if span is None or size < span:
                best, span = node, size
    return best


def _assigned_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _stored_into(node: ast.AST) -> list[str]:
    """The names whose contents ``node`` overwrites in place: ``mask[row, n:] = 1``, ``x[i] += 1``."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
    return [t.value.id for t in targets if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)]


def _last_write(tree: ast.AST, line: int, name: str) -> int | None:
    """The last line before ``line``, in its function, that assigns ``name`` or writes into it (``name[i] = ...``)."""
    before = [n.lineno for n in ast.walk(_scope(tree, line))
              if (name in _assigned_names(n) or name in _stored_into(n)) and n.lineno < line]
    return max(before) if before else None


def _name_origin(tree: ast.AST, line: int, name: str) -> int | None:
    """Where ``name`` got its value at ``line``: its last write in its function, else its one assignment in the file."""
    found = _last_write(tree, line, name)
    if found:
        return found
    everywhere = [n.lineno for n in ast.walk(tree) if name in _assigned_names(n)]
    return everywhere[0] if len(everywhere) == 1 else None


_MISSING = object()


def _literal(node: ast.AST | None) -> object:
    """The value of a literal expression (``4e-8``, ``-1``, ``2 * 8``), else ``_MISSING``."""
    if node is None:
        return _MISSING
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div, ast.Add, ast.Sub)):
        a, b = _literal(node.left), _literal(node.right)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            try:
                return {ast.Mult: a * b, ast.Add: a + b, ast.Sub: a - b}.get(type(node.op)) \
                    if not isinstance(node.op, ast.Div) else a / b
            except ZeroDivisionError:
                return _MISSING
    return _MISSING


def _matches(node: ast.AST | None, value: object) -> bool:
    """A literal that equals the value the run used (any literal when that value is unknown)."""
    lit = _literal(node)
    if lit is _MISSING:
        return False
    if value is None:
        return True
    if isinstance(lit, (int, float)) and isinstance(value, (int, float)) and not isinstance(lit, bool):
        return abs(lit - value) <= 1e-9 * max(abs(lit), abs(value), 1e-30)
    return lit == value


def _attr_origin(tree: ast.AST, attr: str, value: object) -> int | None:
    """Where a setting called ``attr`` gets the run's value: a field, ``x.attr = ...``, an argparse default, a dict key.

    With the value the run used, a literal that differs (a default the
    command line overrode) is not the origin.
    """
    flags = {f"--{attr}", f"--{attr.replace('_', '-')}"}
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == attr \
                and _matches(node.value, value):
            return node.lineno
        if isinstance(node, ast.Assign) and _matches(node.value, value) and any(
                (isinstance(t, ast.Attribute) and t.attr == attr) or (isinstance(t, ast.Name) and t.id == attr)
                for t in node.targets):
            return node.lineno
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument" \
                and any(isinstance(a, ast.Constant) and a.value in flags for a in node.args):
            default = next((kw.value for kw in node.keywords if kw.arg == "default"), None)
            if _matches(default, value):
                return default.lineno
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"):
            # parser.set_defaults(warmup_steps=500), dict(warmup_steps=500), TrainingArguments(warmup_steps=500)
            kw = next((k for k in node.keywords if k.arg == attr and _matches(k.value, value)), None)
            if kw is not None:
                return kw.value.lineno
        if isinstance(node, ast.Dict):
            for key, val in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == attr and _matches(val, value):
                    return val.lineno
    return None


def _receiver_name(call: ast.Call) -> str | None:
    """The variable a ``.backward()``-style call acts on: ``loss.backward()``, ``scaler.scale(loss).backward()``,
    ``accelerator.backward(loss)``."""
    if call.args and isinstance(call.args[0], ast.Name):
        return call.args[0].id
    func = call.func
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name):
            return func.value.id
        if isinstance(func.value, ast.Call) and func.value.args and isinstance(func.value.args[0], ast.Name):
            return func.value.args[0].id
    return None


def receiver_line(filename: str, line: int, method: str) -> int | None:
    """The line that built the value ``method`` is called on at ``line`` (``loss = ...`` for ``loss.backward()``).

    None when the call is not found or the variable's assignment is ambiguous.
    """
    tree = _tree(filename)
    if tree is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method \
                and node.lineno <= line <= (node.end_lineno or node.lineno):
            name = _receiver_name(node)
            return _name_origin(tree, line, name) if name else None
    return None


def _innermost(calls: list[ast.Call]) -> ast.Call:
    """The shortest call, and of those the one ast.walk reaches last (nested deeper)."""
    return min(reversed(calls), key=lambda n: (n.end_lineno or n.lineno) - n.lineno)


def argument_line(filename: str, line: int, names: set[str]) -> int:
    """The line that built the variable passed first to a call on ``line`` (``pooled = h[:, -1]`` for
    ``head(pooled)``, or for ``head(dropout(pooled))``), among ``names`` (the variables that can be the value the
    call received); for ``head(features(encoder, enc))``, the line in ``features`` (a function of this file,
    given whole objects) that builds what it returns. ``line`` when the value is built inline or cannot be traced."""
    tree = _tree(filename)
    if tree is None:
        return line
    spanning = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.lineno <= line <= (n.end_lineno or n.lineno)
                and n.args]
    calls = [n for n in spanning if isinstance(n.args[0], ast.Name) and n.args[0].id in names]
    if calls:
        return _name_origin(tree, line, _innermost(calls).args[0].id) or line
    inner = [n for n in spanning if isinstance(n.args[0], ast.Call) and _plain_call(n.args[0])
             and _function(tree, n.args[0].func) is not None]
    if not inner:
        return line
    return _returned_line(tree, _function(tree, _innermost(inner).args[0].func)) or line


def _plain_call(call: ast.Call) -> bool:
    """Every argument a whole variable or a constant: ``features(encoder, enc)``, not ``pool(out.hidden_states[0])``
    (whose argument already picks, at the call)."""
    return all(isinstance(a, (ast.Name, ast.Constant)) for a in call.args + [k.value for k in call.keywords])


def _returned_line(tree: ast.AST, body: ast.AST) -> int | None:
    """The line that builds what a function returns: its one ``return``, or for ``return pooled`` the last write of
    ``pooled`` in it. None with several returns or none."""
    returns = [n for n in ast.walk(body) if isinstance(n, ast.Return) and n.value is not None]
    if len(returns) != 1:
        return None
    value = returns[0].value
    if isinstance(value, ast.Name):
        return _last_write(tree, returns[0].lineno, value.id) or returns[0].lineno
    return returns[0].lineno


def origin_line(filename: str, line: int, keyword: str, value: object = None) -> int:
    """The line that set the value passed as ``keyword=`` in the call on ``line`` (``line`` if unknown).

    ``value`` is what the run actually used, when defib knows it.
    """
    tree = _tree(filename)
    if tree is None:
        return line
    run_value, value = value, _call_value(tree, line, keyword)
    if value is None:  # passed by position: read by key (``self(batch["input_ids"], batch["attention_mask"])``),
        # or under its own name (``encoder(input_ids, attention_mask)``)
        value = _positional(tree, line, lambda a: _keyed(a) == keyword) or \
            _positional(tree, line, lambda a: isinstance(a, ast.Name) and a.id == keyword)
    if value is None:
        # not passed at this call (``HfArgumentParser.parse_args_into_dataclasses()`` builds the arguments):
        # the one place in the file that sets this setting to the value the run used, if there is one
        return (_attr_origin(tree, keyword, run_value) if run_value is not None else None) or line
    found = None
    if isinstance(value, ast.Name):
        found = _name_origin(tree, line, value.id)
    elif isinstance(value, ast.Attribute):
        found = _attr_origin(tree, value.attr, run_value)
    elif _keyed(value):
        found = _key_origin(tree, _keyed(value), run_value)
    return found or value.lineno


def _freezes(node: ast.AST) -> bool:
    """``x.requires_grad = False`` or ``x.requires_grad_(False)``."""
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value is False:
        return any(isinstance(t, ast.Attribute) and t.attr == "requires_grad" for t in node.targets)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "requires_grad_":
        arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "requires_grad"), None)
        return isinstance(arg, ast.Constant) and arg.value is False
    return False


def freeze_line(filenames: list[str], before: dict[str, int] | None = None) -> tuple[str, int] | None:
    """The line in these files that turns ``requires_grad`` off (attributes are set in C: no hook sees it).

    ``before`` maps a file to the line where the optimizer was built: people
    freeze, then build the optimizer, so the last freeze above that line is
    the one that froze this run's model; else the first in the file.
    """
    for filename in filenames:
        tree = _tree(filename)
        if tree is None:
            continue
        lines = sorted(n.lineno for n in ast.walk(tree) if _freezes(n))
        limit = (before or {}).get(filename)
        earlier = [ln for ln in lines if limit is not None and ln <= limit]
        if lines:
            return filename, (earlier[-1] if earlier else lines[0])
    return None


LABEL_KEY = "labels"  # what transformers models and the Trainer read the targets from


def _key_of(node: ast.AST | None) -> str | None:
    """The string key of ``batch["target"]``, ``batch.pop("target")`` or ``batch.get("target")``."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return node.slice.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("pop", "get") \
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    for child in ast.iter_child_nodes(node) if isinstance(node, ast.Call) else ():  # float(batch["score"])
        key = _key_of(child)
        if key:
            return key
    return None


_NAMESPACES = ("torch", "np", "numpy", "F", "nn")


def _namespace(node: ast.AST) -> bool:
    """``torch`` in ``torch.tensor(y)``: a module, not the targets."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id in _NAMESPACES


def _inside(node: ast.expr) -> ast.expr | None:
    """The values a conversion works on: ``y`` in ``y.float()``, ``y.view(-1)``, ``torch.tensor(y)``, ``zip(*rows)``;
    None for a call without arguments."""
    if isinstance(node, ast.Attribute):
        return node.value
    if isinstance(node, ast.Starred):
        return node.value
    if isinstance(node.func, ast.Attribute) and not _namespace(node.func.value):
        return node.func.value  # a method of the targets
    return node.args[0] if node.args else None  # a function of them


def _loss_target(tree: ast.AST, line: int) -> ast.expr | None:
    """The targets passed to the loss call on ``line`` (its second argument), through conversions, or as far as a
    keyed read (``batch["labels"]``); None when no such call is there."""
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.lineno <= line <= (n.end_lineno or n.lineno)
             and len(n.args) >= 2]
    if not calls:
        return None
    target = min(calls, key=lambda n: (n.end_lineno or n.lineno) - n.lineno).args[1]
    while isinstance(target, (ast.Call, ast.Attribute)) and not _key_of(target) and _inside(target) is not None:
        target = _inside(target)
    return target


def _target_key(tree: ast.AST, line: int) -> str | None:
    """The key the targets of the loss call on ``line`` were read from (``labels`` if no call is there)."""
    target = _loss_target(tree, line)
    if target is None:
        return LABEL_KEY
    key = _key_of(target)
    if key or not isinstance(target, ast.Name):
        return key
    scope = _scope(tree, line)
    sources = [n for n in ast.walk(scope) if isinstance(n, ast.Assign) and n.lineno < line
               and target.id in _assigned_names(n)]
    return _key_of(sources[-1].value) if sources else None


def _bound_names(target: ast.AST) -> list[str]:
    """The names a store target binds or writes into: ``a, (b, gold)``, ``x[i]``."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for t in target.elts for n in _bound_names(t)]
    if isinstance(target, (ast.Subscript, ast.Starred)):
        return _bound_names(target.value)
    return []


def _writer(tree: ast.AST, line: int, name: str) -> ast.AST | None:
    """The last statement before ``line`` in its function that writes ``name`` (an assignment, in place, a loop)."""
    found = None
    for n in ast.walk(_scope(tree, line)):
        targets = n.targets if isinstance(n, ast.Assign) else \
            [n.target] if isinstance(n, (ast.AnnAssign, ast.AugAssign, ast.For)) else []
        if targets and n.lineno < line and any(name in _bound_names(t) for t in targets) \
                and (found is None or n.lineno > found.lineno):
            found = n
    return found


def _made_by_function(tree: ast.AST, node: ast.expr, line: int, depth: int = 8) -> int | None:
    """The return line of the function of this file that built the values ``node`` holds at ``line``.

    ``loss = mse(cos, torch.tensor(gold))`` <- ``a, b, gold = zip(*batch)`` <- ``batch = train[k:k + n]`` <-
    ``train = load_examples("train")`` <- ``return [(a, b, s) for ...]``: followed through plain assignments
    (tuples included), slices and conversions. None when the trail forks, leaves the file, reaches a
    parameter or a loop variable, or meets a write in place (``y *= 5``), which changes the values there.
    """
    for _ in range(depth):
        if isinstance(node, ast.Name):
            writer = _writer(tree, line, node.id)
            if not isinstance(writer, (ast.Assign, ast.AnnAssign)) or writer.value is None \
                    or node.id in _stored_into(writer):
                return None
            node, line = writer.value, writer.lineno
        elif isinstance(node, ast.Subscript) and not _key_of(node):
            node = node.value
        elif isinstance(node, ast.Call) and _function(tree, node.func) is not None:
            return _returned_line(tree, _function(tree, node.func))
        elif isinstance(node, (ast.Call, ast.Attribute, ast.Starred)) and _inside(node) is not None:
            node = _inside(node)
        else:
            return None
    return None


def _made_line(tree: ast.AST, node: ast.expr, line: int) -> int | None:
    """The last write before ``line`` that made the variable ``node`` reads (``y`` in ``y[idx]``), past writes that
    only move or convert it (``y = y.to(device)``): ``y = torch.tensor(scores)``, ``y *= 20``. None for a keyed read,
    a loop variable or a field of a tuple (``batch[1]``)."""
    while isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Constant):
        node = node.value  # rows of the targets
    if not isinstance(node, ast.Name):
        return None
    writer = _writer(tree, line, node.id)
    while isinstance(writer, ast.Assign) and _moves(writer.value, node.id):
        writer = _writer(tree, writer.lineno, node.id)
    if isinstance(writer, ast.AugAssign) or (isinstance(writer, (ast.Assign, ast.AnnAssign))
                                             and writer.value is not None and not _key_of(writer.value)):
        return writer.lineno
    return None


def _moves(value: ast.expr, name: str) -> bool:
    """``y.to(device)``, ``y.float()``, ``y[perm]``: only moves, converts or reorders the variable ``name``."""
    while not _key_of(value):
        if isinstance(value, ast.Subscript):
            value = value.value
        elif isinstance(value, (ast.Call, ast.Attribute, ast.Starred)) and _inside(value) is not None:
            value = _inside(value)
        else:
            break
    return isinstance(value, ast.Name) and value.id == name


def labels_key_line(filename: str) -> int | None:
    """The one line that puts a value under ``labels``, where a transformers model computing its own loss reads
    its targets (``trainer.train()`` gives no loss call to follow)."""
    tree = _tree(filename)
    return _key_line(tree, LABEL_KEY) if tree is not None else None


def _key_line(tree: ast.AST, key: str) -> int | None:
    lines = {found for found, _ in _key_sets(tree, key)}
    return lines.pop() if len(lines) == 1 else None


def label_line(filename: str, line: int) -> int | None:
    """Where the targets reaching the loss call on ``line`` were put under their key.

    ``item["labels"] = float(score) * 20`` in a Dataset, ``{"labels": ...}``
    in a list of examples, ``batch["target"] = ...`` in a collate function:
    the line that made the targets, which is where a constant or mis-scaled
    label is fixed. Targets read from no key (``torch.tensor(gold)``) are
    followed back to the function of this file that built them
    (:func:`_made_by_function`), else to the line that made the variable the
    loss call reads (:func:`_made_line`). None when the file does not show
    it unambiguously.
    """
    tree = _tree(filename)
    if tree is None:
        return None
    key = _target_key(tree, line)
    if not key:
        target = _loss_target(tree, line)
        if not isinstance(target, (ast.Name, ast.Subscript)):
            return None
        return _made_by_function(tree, target, line) or _made_line(tree, target, line)
    return _key_line(tree, key)


def _key_sets(tree: ast.AST, key: str) -> list[tuple[int, ast.expr]]:
    """Every place the file puts a value under ``key`` (``item[key] = v``, ``{key: v}``, ``dict(key=v)``): its line
    and the value."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(_key_of(t) == key for t in node.targets if isinstance(t, ast.Subscript)):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Dict):
            found += [(v.lineno, v) for k, v in zip(node.keys, node.values)
                      if isinstance(k, ast.Constant) and k.value == key and _key_of(v) != key]  # not a pass-through
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            found += [(k.value.lineno, k.value) for k in node.keywords if k.arg == key]  # dict(enc, labels=y)
    return found


def _keyed(node: ast.AST | None) -> str | None:
    """The key a value is read from: ``batch["attention_mask"]``, also moved or cast (``.to(device)``, ``.long()``)."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not _key_of(node):
        node = node.func.value
    return _key_of(node) if isinstance(node, (ast.Subscript, ast.Call)) else None


def _positional(tree: ast.AST, line: int, fits: Callable[[ast.expr], bool]) -> ast.expr | None:
    """The first positional argument that ``fits``, in the innermost call spanning ``line`` that has one."""
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.lineno <= line <= (n.end_lineno or n.lineno)]
    for call in sorted(calls, key=lambda n: (n.end_lineno or n.lineno) - n.lineno):
        hit = next((a for a in call.args if fits(a)), None)
        if hit is not None:
            return hit
    return None


def _key_origin(tree: ast.AST, key: str, run_value: object = None) -> int | None:
    """The line that made the value the file puts under ``key``, when only one place does: the entry itself, or
    for a variable (``{"attention_mask": mask}``) that variable's last write before it (``mask[row, n:] = 1``).

    With the run's value known, a literal that differs is not the origin.
    """
    sets = _key_sets(tree, key)
    if len({found for found, _ in sets}) != 1:
        return None
    line, value = sets[0]
    if run_value is not None and _literal(value) is not _MISSING and not _matches(value, run_value):
        return None
    if isinstance(value, ast.Name):
        return _last_write(tree, line, value.id) or line
    return line


def _assigned_value(tree: ast.AST, line: int) -> ast.expr | None:
    """The value of the assignment that starts on ``line``."""
    return next((n.value for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign))
                 and n.lineno == line and n.value is not None), None)


def _function(tree: ast.AST, func: ast.expr) -> ast.AST | None:
    """The definition of the function ``func`` names: a module-level ``squared_error``, a method ``self.loss_fn``
    (one of that name in the file's classes). None for anything else (a parameter, a nested function)."""
    if isinstance(func, ast.Name):
        defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == func.id]
    elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
        defs = [n for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == func.attr]
    else:
        return None
    return defs[0] if len(defs) == 1 else None


def _subtraction(tree: ast.AST, value: ast.AST | None, line: int, depth: int = 3) -> int | None:
    """The line of the first ``a - b`` in ``value``, in a function of this file it calls, or in the value
    of a name it reads that was assigned earlier in the same function."""
    if value is None or depth == 0:
        return None
    nodes = list(ast.walk(value))
    for n in nodes:
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Sub):
            return n.lineno
    for n in nodes:
        body = _function(tree, n.func) if isinstance(n, ast.Call) else None
        hit = next((m.lineno for m in ast.walk(body) if isinstance(m, ast.BinOp) and isinstance(m.op, ast.Sub)),
                   None) if body is not None else None
        if hit:
            return hit
    scope = _scope(tree, line)
    for n in nodes:
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            before = [a.lineno for a in ast.walk(scope) if n.id in _assigned_names(a) and a.lineno < line]
            hit = _subtraction(tree, _assigned_value(tree, max(before)), max(before), depth - 1) if before else None
            if hit:
                return hit
    return None


def loss_line(filename: str, line: int, comparison: bool) -> int | None:
    """The line that computes the hand-written loss whose ``backward()`` is called on ``line``.

    The assignment of the variable ``backward()`` is called on (``loss = ((pred - y) ** 2).mean()``);
    with ``comparison``, the subtraction of targets from predictions that it makes, followed into a
    function of this file it calls (``loss = squared_error(pred, y)``) and through names it reads
    (``diff = pred - y`` a line above), since a broadcast happens at the subtraction. None when the
    assignment cannot be found unambiguously.
    """
    tree = _tree(filename)
    origin = receiver_line(filename, line, "backward") if tree is not None else None
    if origin is None or not comparison:
        return origin
    return _subtraction(tree, _assigned_value(tree, origin), origin) or origin


def _steps_optimizer(node: ast.AST) -> bool:
    """``optimizer.step()``, ``self.opt.step()``: a no-argument ``.step()`` on something named like an optimizer."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "step"):
        return False
    owner = ast.unparse(node.func.value).lower()
    return "opt" in owner and not node.args


def step_guard_line(filename: str, line: int) -> int | None:
    """In the function that calls ``backward()`` on ``line``: the ``if`` that guards its optimizer's ``.step()``
    (the condition that decides the cadence), else the step call itself; None when neither is there."""
    tree = _tree(filename)
    if tree is None:
        return None
    scope = _scope(tree, line)
    guards = [n.lineno for n in ast.walk(scope) if isinstance(n, ast.If)
              and any(_steps_optimizer(c) for stmt in n.body for c in ast.walk(stmt))]
    if guards:
        return min(guards, key=lambda g: (g < line, abs(g - line)))  # the nearest guard after the backward first
    calls = [n.lineno for n in ast.walk(scope) if _steps_optimizer(n)]
    return min(calls) if calls else None
