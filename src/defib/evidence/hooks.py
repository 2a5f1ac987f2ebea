"""Global PyTorch hooks and patch points: how defib sees a script it did not write.

Two kinds of interception, both observe-only:

* PyTorch's own global hooks: module forward pre/post hooks and optimizer
  step pre/post hooks. They reach every module and optimizer, including the
  ones the transformers ``Trainer`` or Lightning build.
* Thin wrappers around functions that have no hook: the functional losses
  (``nn.MSELoss`` and friends call them too), ``Tensor.backward``,
  ``zero_grad``, the constructors of optimizers, schedulers and DataLoaders,
  and, once transformers is imported, tokenizer calls and ``from_pretrained``.
  Each wrapper calls the original with the same arguments and returns its
  result untouched, so the run computes exactly what it would without defib.
  The one exception is a ``defib run --confirm`` rerun: there the Watcher
  carries a candidate fix (:mod:`defib.fixes`) that the wrappers consult.

:func:`install` returns a handle whose ``remove()`` puts everything back.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import inspect
import sys
import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.optim import optimizer as optimizer_hooks
from torch.utils.data import DataLoader

from defib.evidence.callsite import is_user_file
from defib.evidence.watch import Watcher

LOSS_FUNCTIONS = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss",
                  "binary_cross_entropy_with_logits", "binary_cross_entropy")


INIT_FUNCTIONS = ("normal_", "uniform_", "trunc_normal_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                  "kaiming_normal_", "constant_", "zeros_", "ones_", "orthogonal_", "eye_")


class Installed:
    """What :func:`install` changed, so that :meth:`remove` can undo it."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.patches: list[tuple[Any, str, Any]] = []
        self.finder: _PostImport | None = None

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


def _loss_wrapper(w: Watcher, name: str, original: Callable) -> Callable:
    params = list(inspect.signature(original).parameters)[2:]

    @functools.wraps(original)
    def loss(input, target, *args, **kwargs):
        named = dict(zip(params, args))
        named.update(kwargs)
        if w.fix is not None:  # a --confirm rerun: the candidate fix may change what reaches the loss
            input, target, named = w.apply_fix("loss_args", name, input, target, named,
                                               default=(input, target, named))
            args, kwargs = (), named
        try:
            if _may_warn(input, target):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = original(input, target, *args, **kwargs)
                _rewarn(caught, sys._getframe(1))
            else:
                result = original(input, target, *args, **kwargs)
        except Exception as exc:
            w.loss_failed(name, input, target, named, exc)
            raise
        w.loss_call(name, input, target, result, named)
        return result

    return loss


def _may_warn(input: Any, target: Any) -> bool:
    """torch's element-wise losses warn only when input and target sizes differ."""
    return isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor) and input.shape != target.shape


_SHOWN: set[tuple] = set()


def _rewarn(caught: list, frame: Any) -> None:
    """Re-issue warnings from a wrapped call as if the wrapper were not there.

    torch warns with ``stacklevel=2``, which would name defib's wrapper; the
    user must see their own line, once per line as Python's default filter
    shows it. (Catching is confined to calls that can warn, because entering
    ``catch_warnings`` resets every module's once-only warning registry.)
    """
    for w in caught:
        key = (frame.f_code.co_filename, frame.f_lineno, w.category, str(w.message))
        if key in _SHOWN:
            continue
        _SHOWN.add(key)
        warnings.warn_explicit(w.message, w.category, frame.f_code.co_filename, frame.f_lineno,
                               module=frame.f_globals.get("__name__"))


def _step_pre_hook(w: Watcher) -> Callable:
    """The optimizer pre-step hook; with a closure, observe after the closure's forward and backward.

    ``optimizer.step(closure)`` (Lightning, LBFGS) runs forward and backward
    inside the step, after the pre-step hooks: observed there, every step's
    loss and gradients would land on the next step. The closure is wrapped so
    the watcher's pre-step work runs right after its first evaluation; the
    wrapper returns the closure's own result, so the step is unchanged.
    """
    def hook(optimizer: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        positional = len(args) > 1 and callable(args[1])  # args[0] is the optimizer itself
        closure = args[1] if positional else kwargs.get("closure")
        if closure is None:
            w.step_pre(optimizer, args, kwargs)
            return None
        observed = []

        @functools.wraps(closure)
        def closure_then_observe(*c_args: Any, **c_kwargs: Any) -> Any:
            out = closure(*c_args, **c_kwargs)
            if not observed:  # LBFGS evaluates the closure again in its line search
                observed.append(True)
                w.step_pre(optimizer, args, kwargs)
            return out

        if positional:
            return (args[0], closure_then_observe, *args[2:]), kwargs
        return args, {**kwargs, "closure": closure_then_observe}

    return hook


def install(w: Watcher) -> Installed:
    """Attach ``w`` to every model, optimizer and loss in this process."""
    inst = Installed()
    # bound methods, not lambdas: these two run for every module call of every forward
    inst.handles.append(module_hooks.register_module_forward_pre_hook(w.forward_pre))
    inst.handles.append(module_hooks.register_module_forward_hook(w.forward_post, with_kwargs=True, always_call=True))
    inst.handles.append(optimizer_hooks.register_optimizer_step_pre_hook(_step_pre_hook(w)))
    inst.handles.append(optimizer_hooks.register_optimizer_step_post_hook(lambda o, a, k: w.step_post(o, a, k)))

    for name in LOSS_FUNCTIONS:
        inst.patch(F, name, functools.partial(_loss_wrapper, w, name))

    def backward(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            w.backward_pre(self)
            out = original(self, *args, **kwargs)
            w.backward_post(self)
            return out
        return run

    inst.patch(torch.Tensor, "backward", backward)

    def zero_grad(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            w.zero_grad_call(self)
            if w.fix is not None and w.apply_fix("skip_zero_grad", default=False):
                return None
            return original(self, *args, **kwargs)
        return run

    inst.patch(torch.optim.Optimizer, "zero_grad", zero_grad)
    inst.patch(nn.Module, "zero_grad", zero_grad)

    def after_init(event: Callable[[Any], None]):
        def make(original):
            @functools.wraps(original)
            def run(self, *args, **kwargs):
                original(self, *args, **kwargs)
                event(self)
            return run
        return make

    def optimizer_built(optimizer: Any) -> None:
        w.apply_fix("optimizer_created", optimizer)  # before recording: defib reports the lr the run used
        w.optimizer_created(optimizer)

    inst.patch(torch.optim.Optimizer, "__init__", after_init(optimizer_built))
    inst.patch(nn.modules.loss._Loss, "__init__", after_init(w.loss_module_created))

    def loader_init(original):
        signature = inspect.signature(original)

        @functools.wraps(original)
        def run(self, *args, **kwargs):
            if w.fix is not None:
                try:
                    bound = signature.bind(self, *args, **kwargs)
                    named = dict(bound.arguments)
                    named.pop("self", None)
                    named.update(named.pop("kwargs", {}) or {})
                    args, kwargs = (), w.apply_fix("loader_kwargs", named, default=named)
                except TypeError:
                    pass  # the original call will raise its own error
            original(self, *args, **kwargs)
            w.loader_created(self)
        return run

    inst.patch(DataLoader, "__init__", loader_init)

    def loader_iter(original):
        @functools.wraps(original)
        def run(self):
            w.loader_iter(self)
            return original(self)
        return run

    inst.patch(DataLoader, "__iter__", loader_iter)

    def init_fn(original):
        @functools.wraps(original)
        def run(tensor, *args, **kwargs):
            out = original(tensor, *args, **kwargs)
            # only the user's own init calls: those inside from_pretrained are the library's
            if is_user_file(sys._getframe(1).f_code.co_filename):
                w.init_called(tensor)
            return out
        return run

    for name in INIT_FUNCTIONS:
        if hasattr(nn.init, name):
            inst.patch(nn.init, name, init_fn)
    _patch_activations(inst, w)
    _patch_schedulers(inst, w)
    inst.finder = _PostImport({
        "transformers.tokenization_utils_base": functools.partial(_patch_tokenizers, inst, w),
        "transformers.modeling_utils": functools.partial(_patch_from_pretrained, inst, w),
        "transformers.training_args": functools.partial(_patch_training_args, inst, w),
    })
    inst.finder.install()
    return inst


ACTIVATIONS = ((torch, ("sigmoid", "tanh", "softmax", "relu")), (F, ("sigmoid", "tanh", "softmax", "relu")),
               (torch.Tensor, ("sigmoid", "tanh", "softmax", "relu")))


def _patch_activations(inst: Installed, w: Watcher) -> None:
    """Note where the user's own code applies an output activation.

    A softmax before cross-entropy or a sigmoid on a regression output is
    written in the model's forward, not at the loss call; matching the loss
    input's autograd node against these calls points ``where`` at that line.
    Calls from library code (attention softmax inside BERT) are skipped at
    the cost of one cached file-name check.
    """
    def make(original):
        @functools.wraps(original)
        def run(*args, **kwargs):
            caller = sys._getframe(1)
            if w.fix is not None and args and is_user_file(caller.f_code.co_filename) \
                    and w.apply_fix("skip_activation", caller.f_code.co_filename, caller.f_lineno, default=False):
                return args[0]  # a --confirm rerun dropping this activation
            out = original(*args, **kwargs)
            if is_user_file(caller.f_code.co_filename):
                w.activation_called(out, caller)
            return out
        return run

    for owner, names in ACTIVATIONS:
        for name in names:
            if hasattr(owner, name):
                inst.patch(owner, name, make)


def _patch_schedulers(inst: Installed, w: Watcher) -> None:
    from torch.optim import lr_scheduler

    base = getattr(lr_scheduler, "LRScheduler", None) or lr_scheduler._LRScheduler

    def init(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            self._defib_init = True  # LRScheduler.__init__ steps once itself: not a user step
            try:
                original(self, *args, **kwargs)
            finally:
                self._defib_init = False
            w.apply_fix("scheduler_created", self)
            w.scheduler_created(self)
        return run

    def step(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            if not getattr(self, "_defib_init", False):
                w.scheduler_stepped(self)
                if w.fix is not None and w.apply_fix("skip_scheduler_step", default=False):
                    return None
            return original(self, *args, **kwargs)
        return run

    inst.patch(base, "__init__", init)
    inst.patch(base, "step", step)
    plateau = getattr(lr_scheduler, "ReduceLROnPlateau", None)
    if plateau is not None and not issubclass(plateau, base):
        inst.patch(plateau, "step", step)


def _patch_tokenizers(inst: Installed, w: Watcher, module: Any) -> None:
    cls = getattr(module, "PreTrainedTokenizerBase", None)
    if cls is None:
        return

    def call(original):
        @functools.wraps(original)
        def run(self, text=None, *args, **kwargs):
            if w.fix is not None:
                kwargs = w.apply_fix("tokenizer_kwargs", kwargs, default=kwargs)
            out = original(self, text, *args, **kwargs)
            named = dict(kwargs)
            if args and "text_pair" not in named:
                named["text_pair"] = args[0]
            if w.s.data is None or w.s.data.pad_token_id is None:
                w._data().pad_token_id = getattr(self, "pad_token_id", None)
            w.tokenizer_called(text, named, out)
            return out
        return run

    inst.patch(cls, "__call__", call)


def _patch_from_pretrained(inst: Installed, w: Watcher, module: Any) -> None:
    cls = getattr(module, "PreTrainedModel", None)
    if cls is None:
        return
    original = cls.__dict__["from_pretrained"].__func__

    def make(_):
        @functools.wraps(original)
        def from_pretrained(klass, *args, **kwargs):
            model = original(klass, *args, **kwargs)
            try:
                model._defib_pretrained = True
            except Exception:  # a model that refuses attributes just goes unmarked
                pass
            return model
        return classmethod(from_pretrained)

    inst.patches.append((cls, "from_pretrained", cls.__dict__["from_pretrained"]))
    setattr(cls, "from_pretrained", make(None))
    if "post_init" in cls.__dict__:  # every HF model calls post_init at the end of __init__
        def post_init(original):
            @functools.wraps(original)
            def run(self, *args, **kwargs):
                out = original(self, *args, **kwargs)
                w.model_built(self)
                return out
            return run
        inst.patch(cls, "post_init", post_init)


def _patch_training_args(inst: Installed, w: Watcher, module: Any) -> None:
    """Remember where the user wrote ``TrainingArguments(learning_rate=...)``."""
    from defib.evidence.callsite import where_here

    cls = getattr(module, "TrainingArguments", None)
    if cls is None:
        return

    def init(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            original(self, *args, **kwargs)
            try:
                w.training_args_where = where_here(keyword="learning_rate", skip=2,
                                                   value=getattr(self, "learning_rate", None))
            except Exception as exc:
                w.record_internal_error("TrainingArguments", exc)
        return run

    inst.patch(cls, "__init__", init)


class _PostImport(importlib.abc.MetaPathFinder):
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
