"""TensorBoard: defib's series as scalars and its findings as text, in the ``SummaryWriter`` the run already uses.

A writer has no registry to look it up in, so defib finds it two ways.
Writers built while defib watches are seen as they are built: once
``torch.utils.tensorboard`` is imported, ``SummaryWriter.__init__`` is
wrapped with the patch-and-undo mechanism of defib's other hooks
(:mod:`defib.evidence.hooks.patching`); under ``defib run`` that is from
torch's import on, so every writer is seen. A writer built before the watch
began (the Trainer's ``TensorBoardCallback`` makes its own in
``on_train_begin``, just before defib's callback runs; a script may make one
before ``defib.watch``) is looked for once, when the watch starts, where it
cheaply can be: among the objects of the garbage collector's two young
generations (a writer made just before) and the variables of the calling
frames (a script's ``writer = SummaryWriter()``). A full scan of every live
object would find more, but costs a quarter of a second in a process that has
imported transformers: more than the run's whole budget for defib's trackers.
"""

from __future__ import annotations

import functools
import gc
import sys
import weakref
from typing import Any

from defib.evidence.hooks.patching import Installed, PostImport
from defib.integrations.trackers.base import FINDINGS_TAG, Tracker

WRITER_MODULE = "torch.utils.tensorboard.writer"


class Writers:
    """The ``SummaryWriter`` objects of this process: the newest still open is the run's."""

    def __init__(self) -> None:
        self._seen: list[weakref.ref] = []
        self._installed: Installed | None = None

    def install(self) -> None:
        """Wrap ``SummaryWriter.__init__`` now, or when the run imports it (nothing is imported here)."""
        inst = Installed()
        inst.finder = PostImport({WRITER_MODULE: lambda module: inst.patch(module.SummaryWriter, "__init__",
                                                                           self._noting)})
        module = sys.modules.get(WRITER_MODULE)
        if module is not None:  # imported before the watch began: writers may exist already
            self._seen.extend(weakref.ref(w) for w in _existing(module.SummaryWriter))
        inst.finder.install()
        self._installed = inst

    def remove(self) -> None:
        if self._installed is not None:
            self._installed.remove()
            self._installed = None

    def _noting(self, original: Any) -> Any:
        @functools.wraps(original)
        def init(writer: Any, *args: Any, **kwargs: Any) -> None:
            original(writer, *args, **kwargs)
            self._seen.append(weakref.ref(writer))
        return init

    def current(self) -> Any:
        """The newest open writer, or None."""
        self._seen = [ref for ref in self._seen if ref() is not None]
        open_ = [w for w in (ref() for ref in self._seen) if w is not None and _is_open(w)]
        return open_[-1] if open_ else None


def _existing(cls: type) -> list[Any]:
    """The instances of ``cls`` that are young objects or variables of the calling frames (see the module's doc)."""
    found: dict[int, Any] = {}
    for generation in (0, 1):
        for o in gc.get_objects(generation):
            if issubclass(type(o), cls):  # type(): isinstance on a dead weak proxy raises
                found[id(o)] = o
    frame = sys._getframe(1)
    while frame is not None:
        for scope in (frame.f_locals, frame.f_globals):
            for o in list(scope.values()):
                if issubclass(type(o), cls):
                    found[id(o)] = o
        frame = frame.f_back
    return list(found.values())


def _is_open(writer: Any) -> bool:
    # close() sets all_writers to None, and a write after it would open a new event file
    return getattr(writer, "all_writers", None) is not None


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, writer: Any):
        super().__init__(writer)
        self.writer = writer

    def open(self) -> bool:
        return _is_open(self.writer)

    def write(self, step: int, values: dict[str, float], findings: list[tuple[int, str]]) -> None:
        # queued for the writer's own thread, which flushes on its schedule and at close(): no disk wait here
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        for at, text in findings:
            self.writer.add_text(FINDINGS_TAG, text, at)
