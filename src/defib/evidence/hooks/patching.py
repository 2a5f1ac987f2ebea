"""The patch mechanics: what was changed and how to undo it, and a callback run when a module is imported.

Nothing here knows about torch or transformers; :mod:`torch_patches` and
:mod:`transformers_patches` say what to patch.
"""

from __future__ import annotations

import functools
import importlib.abc
import sys
from typing import Any, Callable


def after_init(event: Callable[[Any], None]) -> Callable[[Any], Any]:
    """A patch for ``__init__`` that calls ``event(self)`` once the object is built."""
    def make(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            original(self, *args, **kwargs)
            event(self)
        return run
    return make


class Installed:
    """What :func:`defib.evidence.hooks.install` changed, so that :meth:`remove` can undo it."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.patches: list[tuple[Any, str, Any]] = []
        self.finder: PostImport | None = None

    def patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        if getattr(original, "_defib_original", None) is not None:
            return  # already patched by another watcher: never stack wrappers
        wrapper = make(original)
        wrapper._defib_original = original
        self.patches.append((owner, name, original))
        setattr(owner, name, wrapper)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        for owner, name, original in reversed(self.patches):
            setattr(owner, name, original)
        self.handles.clear()
        self.patches.clear()
        if self.finder is not None and self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)


class PostImport(importlib.abc.MetaPathFinder):
    """Run a callback on a module right after it is imported (or now, if it already is)."""

    def __init__(self, callbacks: dict[str, Callable[[Any], None]]):
        self.callbacks = callbacks

    def install(self) -> None:
        for name, cb in list(self.callbacks.items()):
            if name in sys.modules:
                cb(sys.modules[name])
                del self.callbacks[name]
        if self.callbacks:
            sys.meta_path.insert(0, self)

    def find_spec(self, fullname, path=None, target=None):
        cb = self.callbacks.get(fullname)
        if cb is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                loader = spec.loader
                original_exec = loader.exec_module

                def exec_module(module, _orig=original_exec, _cb=cb):
                    _orig(module)
                    _cb(module)

                spec.loader = _Loader(loader, exec_module)
                return spec
        return None


class _Loader(importlib.abc.Loader):
    def __init__(self, inner, exec_module):
        self.inner = inner
        self._exec = exec_module

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        # hand the module its real loader back, so inspect/linecache/resources see the usual one
        module.__loader__ = self.inner
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.inner
        self._exec(module)

    def __getattr__(self, name):
        return getattr(self.inner, name)
