"""What defib hooks in PyTorch: module and optimizer global hooks, and wrappers where torch has no hook.

PyTorch's own global hooks (module forward pre/post, optimizer step pre/post)
reach every module and optimizer, including the ones the transformers
``Trainer`` or Lightning build. The rest is wrapped: the functional losses
(``nn.MSELoss`` and friends call them too), ``Tensor.backward``,
``zero_grad``, the constructors of optimizers, loss modules, schedulers and
DataLoaders, ``nn.init``, the activation functions and ``GradScaler``.
"""

from __future__ import annotations

import functools
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
from defib.evidence.hooks.patching import Installed, after_init
from defib.evidence.watch import Watcher

LOSS_FUNCTIONS = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss",
                  "binary_cross_entropy_with_logits", "binary_cross_entropy")


INIT_FUNCTIONS = ("normal_", "uniform_", "trunc_normal_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                  "kaiming_normal_", "constant_", "zeros_", "ones_", "orthogonal_", "eye_")

ACTIVATIONS = ((torch, ("sigmoid", "tanh", "softmax", "relu")), (F, ("sigmoid", "tanh", "softmax", "relu")),
               (torch.Tensor, ("sigmoid", "tanh", "softmax", "relu")))
# their module forms: called from an ``nn.Sequential`` head, the user's line is where the module was built
ACTIVATION_MODULES = (nn.Sigmoid, nn.Tanh, nn.Softmax, nn.ReLU)
_ACTIVATION_FORWARDS = frozenset(cls.forward.__code__ for cls in ACTIVATION_MODULES)


def install_torch(inst: Installed, w: Watcher) -> None:
    """Attach ``w`` to every module, optimizer, loss, DataLoader and scheduler in this process."""
    w.forward.widen()  # on every module until the watched optimizer steps, then on the models seen
    inst.handles.append(w.forward)
    inst.handles.append(optimizer_hooks.register_optimizer_step_pre_hook(_step_pre_hook(w)))
    inst.handles.append(optimizer_hooks.register_optimizer_step_post_hook(lambda o, a, k: w.step_post(o, a, k)))
    inst.handles.append(module_hooks.register_module_parameter_registration_hook(w.evaluation.param_registered))

    for name in LOSS_FUNCTIONS:
        inst.patch(F, name, functools.partial(_loss_wrapper, w, name))

    def backward(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            w.optim.backward_pre(self)
            out = original(self, *args, **kwargs)
            w.optim.backward_post(self)
            return out
        return run

    inst.patch(torch.Tensor, "backward", backward)

    def zero_grad(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            w.optim.zero_grad_call(self)
            if w.fix is not None and w.apply_fix("skip_zero_grad", default=False):
                return None
            return original(self, *args, **kwargs)
        return run

    inst.patch(torch.optim.Optimizer, "zero_grad", zero_grad)
    inst.patch(nn.Module, "zero_grad", zero_grad)

    def optimizer_built(optimizer: Any) -> None:
        w.apply_fix("optimizer_created", optimizer)  # before recording: defib reports the lr the run used
        w.optim.optimizer_created(optimizer)

    inst.patch(torch.optim.Optimizer, "__init__", after_init(optimizer_built))

    # model.to(torch.bfloat16), .half(): where O009 points when such weights are stepped. ``_apply`` is what
    # all of them call (once per module, recursively): patching ``to`` itself would leak into transformers,
    # whose PreTrainedModel.to copies nn.Module.to's attributes (functools.wraps) when it is imported
    def cast(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            if sys._getframe(1).f_code is not original.__code__:  # the outermost module of the cast only
                w.optim.module_cast(self)
            return out
        return run

    inst.patch(nn.Module, "_apply", cast)
    inst.patch(nn.modules.loss._Loss, "__init__", after_init(w.loss.loss_module_created))
    _patch_loaders(inst, w)

    def init_fn(original):
        @functools.wraps(original)
        def run(tensor, *args, **kwargs):
            out = original(tensor, *args, **kwargs)
            # only the user's own init calls: those inside from_pretrained are the library's
            if is_user_file(sys._getframe(1).f_code.co_filename):
                w.model.init_called(tensor)
            w.evaluation.init_called(tensor)
            return out
        return run

    for name in INIT_FUNCTIONS:
        if hasattr(nn.init, name):
            inst.patch(nn.init, name, init_fn)
    _patch_activations(inst, w)
    _patch_schedulers(inst, w)
    _patch_grad_scaler(inst, w)


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
            w.loss.loss_failed(name, input, target, named, exc)
            raise
        w.loss.loss_call(name, input, target, result, named)
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
        w.step_calls += 1
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


def _patch_loaders(inst: Installed, w: Watcher) -> None:
    """DataLoader construction (where, which sampler) and iteration (which loader feeds the next forward)."""
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
            w.data.loader_created(self)
        return run

    inst.patch(DataLoader, "__init__", loader_init)

    def loader_iter(original):
        @functools.wraps(original)
        def run(self):
            w.data.loader_iter(self)
            return original(self)
        return run

    inst.patch(DataLoader, "__iter__", loader_iter)


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
            site = _activation_site(sys._getframe(1))
            if w.fix is not None and args and site is not None \
                    and w.apply_fix("skip_activation", site[0], site[1], default=False):
                return args[0]  # a --confirm rerun dropping this activation
            out = original(*args, **kwargs)
            if site is not None:
                w.model.activation_called(out, *site)
            return out
        return run

    def built(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            original(self, *args, **kwargs)
            # only a module the user's own line builds: a library's (BERT's pooler tanh) is not theirs to delete
            frame = sys._getframe(1)
            if is_user_file(frame.f_code.co_filename):
                self._defib_built_at = (frame.f_code.co_filename, frame.f_lineno)
        return run

    for owner, names in ACTIVATIONS:
        for name in names:
            if hasattr(owner, name):
                inst.patch(owner, name, make)
    for cls in ACTIVATION_MODULES:
        inst.patch(cls, "__init__", built)

    def bounded(original):  # a cosine similarity regressed onto labels: its range is what M003 checks
        @functools.wraps(original)
        def run(*args, **kwargs):
            out = original(*args, **kwargs)
            if is_user_file(sys._getframe(1).f_code.co_filename):
                w.model.bounded_called(out, "cosine similarity", -1.0, 1.0)
            return out
        return run

    for owner in (torch, F):
        inst.patch(owner, "cosine_similarity", bounded)


def _activation_site(caller: Any) -> tuple[str, int] | None:
    """(file, line) of the user's code behind an activation call, or None for a library's own call.

    A call from the user's file is that line. A call from an activation module's ``forward`` (``nn.Sigmoid()``
    as the last layer of an ``nn.Sequential`` head) is the line that built the module, when defib saw it built:
    that is the line to delete, the forward being torch's. Any other library call (attention's softmax) is None.
    """
    code = caller.f_code
    if is_user_file(code.co_filename):
        return code.co_filename, caller.f_lineno
    if code in _ACTIVATION_FORWARDS:
        return getattr(caller.f_locals.get("self"), "_defib_built_at", None)
    return None


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
            w.optim.scheduler_created(self)
        return run

    def step(original):
        @functools.wraps(original)
        def run(self, *args, **kwargs):
            if not getattr(self, "_defib_init", False):
                w.optim.scheduler_stepped(self)
                if w.fix is not None and w.apply_fix("skip_scheduler_step", default=False):
                    return None
            return original(self, *args, **kwargs)
        return run

    inst.patch(base, "__init__", init)
    inst.patch(base, "step", step)
    plateau = getattr(lr_scheduler, "ReduceLROnPlateau", None)
    if plateau is not None and not issubclass(plateau, base):
        inst.patch(plateau, "step", step)


def _patch_grad_scaler(inst: Installed, w: Watcher) -> None:
    """``torch.amp.GradScaler`` (``torch.cuda.amp``'s and accelerate's fp16 use it): the loss it scales and the
    steps it skips.

    ``scaler.scale(loss)`` multiplies the loss by 65536 or so: backward() must
    read the user's loss, not that. ``scaler.step(opt)`` calls ``opt.step()``
    only when the unscaled gradients are finite; a step it skips reaches no
    optimizer hook, so the wrapper tells the watcher whether one ran.
    """
    from torch.amp import GradScaler

    def scale(original):
        @functools.wraps(original)
        def run(self, outputs):
            scaled = original(self, outputs)
            w.optim.loss_scaled(outputs, scaled)
            return scaled
        return run

    def step(original):
        @functools.wraps(original)
        def run(self, optimizer, *args, **kwargs):
            before = w.step_calls
            out = original(self, optimizer, *args, **kwargs)
            if self.is_enabled():
                w.scaler_step(self, optimizer, taken=w.step_calls > before)
            return out
        return run

    inst.patch(GradScaler, "scale", scale)
    inst.patch(GradScaler, "step", step)
