"""The error guard every event handler runs under, and the base of the watcher's parts.

One guard for the watcher and all its parts: a handler entered while another
runs (defib's own tensor ops reaching a patched function) returns at once,
and every handler reads the user's grad mode from the watcher, not from
inside defib's ``no_grad``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:
    from defib.evidence.watch.watcher import Watcher


def guarded(method: Callable) -> Callable:
    """Run an event handler; on any exception, record it and carry on.

    ``self.w`` is the watcher, whether ``self`` is the watcher or one of its parts.
    """

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        w = self.w
        if w._inside:
            return None
        w._inside = True
        w._grad = torch.is_grad_enabled()  # the user's mode, before defib's no_grad
        try:
            with torch.no_grad():
                return method(self, *args, **kwargs)
        except Exception as exc:  # defib must never stop the user's training
            w.record_internal_error(method.__name__, exc)
            return None
        finally:
            w._inside = False

    return run


class Part:
    """One kind of evidence: its private state, writing into the watcher's signals ``w.s``."""

    def __init__(self, watcher: Watcher):
        self.w = watcher
