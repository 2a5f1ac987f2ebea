"""Where the watcher's forward hooks sit: on every module while the models are being found, on a few after.

A global module hook makes PyTorch take its slow call path for every module
of every forward (about 230 per BERT-base forward, 460 for BERT-large): 1.5 ms
of Python per forward measured on a 12-layer BERT, 4% of a 40 ms GPU step.
Only a few modules matter to the watcher: the outermost call of each model
(the batch, the predictions), the encoders whose ``last_hidden_state`` it
reads, and whatever else the script calls at top level in a training forward
(a head outside the model). So the hooks are global only while models may be
new (from :meth:`ForwardHooks.widen` until the watched optimizer's next step),
and then move onto the modules that were seen doing those things
(:meth:`ForwardHooks.narrow`). A model built later (the transformers
``post_init`` patch reports every Hugging Face model) widens them again until
the next step. A module defib never saw called at top level before a step,
and built outside transformers after it, is not watched; that is the price.

The hook callables are :class:`Hook` objects rather than bound methods:
``copy.deepcopy(model)`` (an EMA copy, a teacher) copies a module's own hooks,
and a bound method would drag a copy of the whole watcher along; a pickled
model (``torch.save(model)``) must not carry defib either.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from torch import nn
from torch.nn.modules import module as module_hooks


class ForwardHooks:
    """The watcher's forward pre/post hooks and the modules they sit on."""

    def __init__(self, pre: Callable, post: Callable):
        self._pre = Hook(pre)
        self._post = Hook(post)
        self._global: list[Any] = []
        self._own: dict[int, list[Any]] = {}        # id(module) -> its handles, while narrowed
        self._seen: dict[int, weakref.ref] = {}     # the modules that matter

    @property
    def is_global(self) -> bool:
        return bool(self._global)

    def widen(self) -> None:
        """Hooks on every module (models may be new): from install, and when a model is built."""
        if self._global:
            return
        self._remove_own()  # never both: a module with its own hook and the global one would count twice
        self._global = [module_hooks.register_module_forward_pre_hook(self._pre),
                        module_hooks.register_module_forward_hook(self._post, with_kwargs=True, always_call=True)]

    def note(self, module: nn.Module) -> None:
        """``module`` matters (an outermost call, an encoder): keep watching it once the hooks narrow."""
        key = id(module)
        ref = self._seen.get(key)
        if ref is not None and ref() is module:
            return
        self._seen[key] = weakref.ref(module)
        if not self._global:  # already narrowed (a model handed to defib.watch later)
            self._hook(module)

    def narrow(self) -> None:
        """Move the hooks from every module onto the modules seen (after a step of the watched optimizer)."""
        if not self._global or not self._seen:
            return
        for h in self._global:
            h.remove()
        self._global = []
        for key, ref in list(self._seen.items()):
            module = ref()
            if module is None:
                del self._seen[key]
            else:
                self._hook(module)

    def remove(self) -> None:
        """Take every hook off (the watch ends)."""
        for h in self._global:
            h.remove()
        self._global = []
        self._remove_own()

    def _hook(self, module: nn.Module) -> None:
        if id(module) not in self._own:
            self._own[id(module)] = [module.register_forward_pre_hook(self._pre),
                                     module.register_forward_hook(self._post, with_kwargs=True, always_call=True)]

    def _remove_own(self) -> None:
        for handles in self._own.values():
            for h in handles:
                h.remove()
        self._own.clear()


class Hook:
    """A hook callable that a deep copy of the module shares and a pickle of the module drops."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __deepcopy__(self, memo: dict) -> "Hook":
        return self

    def __reduce__(self) -> tuple:
        return (_Inert, ())


class _Inert:
    """What a pickled model's defib hook becomes when loaded: nothing."""

    def __call__(self, *args: Any) -> None:
        return None
