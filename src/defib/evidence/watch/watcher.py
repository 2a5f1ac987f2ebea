"""The watcher: the step clock, the error guard's state, the confirmation fix, and the parts that own the evidence."""

from __future__ import annotations

import contextlib
import time
import traceback
from typing import Any, Callable, Iterator

import torch
from torch import nn

from defib.evidence import distributed
from defib.evidence.watch.data import DataEvidence, find_inputs
from defib.evidence.watch.evaluation import EvaluationEvidence
from defib.evidence.watch.forward import ForwardHooks
from defib.evidence.watch.graph import mark_output, mark_outputs_in
from defib.evidence.watch.guard import guarded
from defib.evidence.watch.loss import LossEvidence
from defib.evidence.watch.model import ModelEvidence
from defib.evidence.watch.optim import OptimEvidence
from defib.evidence.watch.rows import RowSample
from defib.evidence.watch.sentence import SentenceEvidence
from defib.signals.run import MAX_INTERNAL_ERRORS, Signals

COST_BUDGET = 0.01  # share of the run's wall time defib's own work may take before it samples less often
PACE_FROM_STEP = 100  # steps sampled on the configured period whatever it costs
MAX_SLOWDOWN = 8  # sampling never gets rarer than this many times the configured period
MAX_LATER = 4096  # values put off before they are read anyway (bounds memory when no step ever comes)


class Cost:
    """defib's own time in the watcher's step handlers, against the run's wall time, between evaluation points."""

    def __init__(self) -> None:
        self.own = 0.0
        self._since: float | None = None  # wall clock and own time at the last check
        self._own_then = 0.0

    def check(self, now: float) -> float | None:
        """defib's share of the wall time since the last check (None at the first)."""
        share = None
        if self._since is not None and now > self._since:
            share = (self.own - self._own_then) / (now - self._since)
        self._since, self._own_then = now, self.own
        return share


class Watcher:
    """Collects signals from one training run.

    ``sample_every``: expensive measurements (per-group gradient norms, update
    ratios, representation spread) run on the first steps and then every this
    many optimizer steps. ``window``: how many recent predictions define the
    current prediction spread. ``evaluate_every``: how often the callbacks
    registered with :meth:`on_evaluate` run during training (the rules, so
    that a flatline is announced when it happens).

    Reading a tensor's value on the host (``float``, ``.item()``, ``.cpu()``)
    makes the CPU wait for the GPU to finish everything queued, which costs a
    GPU step its overlap. So the parts read nothing on the steps in between:
    they hand small detached copies to :meth:`later`, and :meth:`flush` reads
    them all, in order, at the next sampled step or evaluation point (and
    before anything reads the signals), through the same code that would have
    read them at once. The series come out step by step as before.
    """

    def __init__(self, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None, *,
                 sample_every: int = 10, window: int = 256, evaluate_every: int = 10):
        self.sample_every = sample_every
        self.evaluate_every = evaluate_every
        self.base_every = sample_every
        self.cost = Cost()
        self.s = Signals()
        self.s.config = {"sample_every": sample_every, "window": window}
        self._inside = False  # a guarded handler is running (see guard.guarded)
        self._grad = True     # the user's grad mode when the running handler was entered
        self._depth = 0
        self._step_callbacks: list[Callable[[int], None]] = []
        self._evaluate_callbacks: list[Callable[[int], None]] = []
        self.fix: Any = None  # a candidate fix (defib.fixes) applied by the wrappers, only in a --confirm rerun
        self.started = time.time()
        self._later: list[tuple[Callable, tuple]] = []  # host reads put off until the next flush
        self.step_calls = 0  # optimizer steps that ran, of any optimizer (counted by the pre-step hook)
        self.model = ModelEvidence(self)
        self.data = DataEvidence(self)
        self.loss = LossEvidence(self, window)
        self.optim = OptimEvidence(self)
        self.sentence = SentenceEvidence(self)
        self.rows = RowSample(self)
        self.evaluation = EvaluationEvidence(self)
        self.forward = ForwardHooks(self.forward_pre, self.forward_post)  # placed by hooks.install (see forward.py)
        if model is not None:
            self.model.add_root(model)
        if optimizer is not None:
            self.optim.optimizer_created(optimizer, where=None)

    @property
    def w(self) -> "Watcher":
        """The watcher itself: ``guarded`` reaches the watcher as ``self.w`` from the watcher and its parts alike."""
        return self

    # ------------------------------------------------------------------ errors and the confirmation fix
    def record_internal_error(self, where: str, exc: BaseException) -> None:
        if len(self.s.internal_errors) < MAX_INTERNAL_ERRORS:
            tb = traceback.extract_tb(exc.__traceback__)
            last = tb[-1] if tb else None
            at = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
            self.s.internal_errors.append(f"{where}: {type(exc).__name__}: {exc}{at}")

    def apply_fix(self, hook: str, *args: Any, default: Any = None) -> Any:
        """Call the confirmation fix's ``hook``; a fix that raises is reported, never the user's problem."""
        if self.fix is None:
            return default
        try:
            return getattr(self.fix, hook)(*args)
        except Exception as exc:
            self.record_internal_error(f"fix.{hook}", exc)
            return default

    def roots(self) -> list[nn.Module]:
        """The models seen so far (a confirmation fix's ``before_step`` reaches them through the watcher)."""
        return self.model.roots()

    def head_outside(self) -> nn.Module | None:
        """A head the script calls at top level, outside the models (``head(out.hidden_states[-1][:, 0])``)."""
        return self.model.head_outside()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """defib's own work in the user's process (the label control at the end): every handler returns at once."""
        was, self._inside = self._inside, True
        try:
            yield
        finally:
            self._inside = was

    # ------------------------------------------------------------------ host reads put off
    def later(self, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` at the next flush: ``args`` are tensors whose values must not be read now."""
        self._later.append((fn, args))
        if len(self._later) > MAX_LATER:  # a run that never reaches a sampled step (no optimizer step)
            self._flush()

    @guarded
    def flush(self) -> None:
        """Read every value put off so far (for a reader outside the watcher's handlers)."""
        self._flush()

    def _flush(self) -> None:
        pending, self._later = self._later, []
        for fn, args in pending:
            try:
                fn(*args)
            except Exception as exc:  # one bad value is reported, the others are still read
                self.record_internal_error(getattr(fn, "__name__", "later"), exc)

    # ------------------------------------------------------------------ the step clock
    def sampled(self, step: int) -> bool:
        """Expensive measurements run at this step."""
        return step < 3 or step % self.sample_every == 0

    def sampling(self) -> bool:
        """Expensive measurements run now (the steps taken so far decide)."""
        return self.sampled(self.s.step)

    def on_step(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(step)`` after every step of the watched optimizer."""
        self._step_callbacks.append(callback)

    def on_evaluate(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(step)`` at each evaluation point (steps 1-3, then every ``evaluate_every``)."""
        self._evaluate_callbacks.append(callback)

    # ------------------------------------------------------------------ forward
    # While the hooks are global (forward.py) they run for every submodule call
    # (about 230 per BERT-base forward), so they stay outside ``guarded``: its
    # no_grad context costs more than the work. They only count nesting depth,
    # mark small outputs for a hand-written loss to be read from its graph
    # (graph.mark_output, which never raises), and hand the calls that matter
    # (an encoder's output, the outermost module) to the guarded handler;
    # integer updates and a getattr cannot raise.
    def forward_pre(self, module: nn.Module, args: tuple) -> None:
        self._depth += 1

    def forward_post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any = None) -> Any:
        # output is missing when the forward raised (always_call=True still calls the hook)
        self._depth = max(0, self._depth - 1)
        replaced = self._fixed_output(module, output) if self.fix is not None else None
        self._forward_post(module, args, kwargs, output if replaced is None else replaced)
        return replaced  # torch uses a hook's non-None return as the module's output

    def _fixed_output(self, module: nn.Module, output: Any) -> Any:
        """A confirmation rerun's fix for a top-level training output (None: the output stands)."""
        if self._depth != 0 or output is None or not module.training or not torch.is_grad_enabled():
            return None
        ls = self.s.loss
        return self.apply_fix("model_output", module, output, ls is not None and ls.source == "graph")

    def _forward_post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if kwargs is None and isinstance(module, nn.Embedding) and args:  # torch's way out of a forward that raised
            self.data.embedding_raised(module, args[0])
        if type(output) is torch.Tensor:
            if output.ndim <= 2:  # a prediction a hand-written loss may read
                mark_output(output)
        elif self._depth == 0:
            # a model's output object (logits in a ModelOutput, a tuple): once the hooks narrow to the
            # outermost calls (forward.py), the head inside that made the logits is no longer hooked
            mark_outputs_in(output)
        if self._depth == 0 or (type(output) is not torch.Tensor and
                                getattr(output, "last_hidden_state", None) is not None):
            self.forward.note(module)
            self._forward_out(module, args, kwargs, output)
            if self._depth == 0 and type(output) is torch.Tensor and module.training and torch.is_grad_enabled():
                self.model.outside_head(module, args)
            elif self._depth == 0 and self.evaluation.watching() and not (module.training and torch.is_grad_enabled()):
                self.evaluation.evaluation_call(module)  # the script's own evaluation after training

    @guarded
    def _forward_out(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        # global pre-hooks get no kwargs, so the inputs are read here, after the call
        hidden = getattr(output, "last_hidden_state", None)
        if isinstance(hidden, torch.Tensor) and hidden.ndim == 3:
            if self._grad:
                if self.sampling():
                    started = time.perf_counter()
                    self.model.encoder_output(hidden, find_inputs(args, kwargs)[1])
                    self.cost.own += time.perf_counter() - started
                if self.rows.wanted():  # every step until the sample is full: copies on the device, read later
                    started = time.perf_counter()
                    self.rows.encoder_call(module, args, kwargs, *find_inputs(args, kwargs))
                    self.cost.own += time.perf_counter() - started
                if self._depth > 0 and module.training:
                    # inside the user's own module: what the encoder itself received is what counts for the
                    # mask (a wrapper whose forward takes attention_mask and drops it before the encoder)
                    self.data.encoder_batch(*find_inputs(args, kwargs))
            else:
                self.model.nograd_encoder(module)
        if self._depth == 0:
            self._root_call(module, args, kwargs)

    def _root_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        ids, mask = find_inputs(args, kwargs)
        if ids is None:
            return
        self.model.add_root(module)
        if not self._grad or not module.training:
            self.data.evaluation_forward()
            return
        self.data.training_batch(ids, mask, module)

    # ------------------------------------------------------------------ optimizer step
    @guarded
    def step_pre(self, optimizer: torch.optim.Optimizer, args: tuple = (), kwargs: dict | None = None) -> None:
        started = time.perf_counter()
        if self.fix is not None and self.optim.may_be_main(optimizer):
            self.apply_fix("before_step", optimizer, self)  # first: the step and what defib records see the fix
        if not self.optim.adopt(optimizer):
            return
        step = self.s.step + 1
        self.optim.before_step(step, optimizer)
        self.later(self.loss.close_step, step)
        self.cost.own += time.perf_counter() - started

    @guarded
    def step_post(self, optimizer: torch.optim.Optimizer, args: tuple = (), kwargs: dict | None = None) -> None:
        if not self.optim.is_main(optimizer):
            return
        started = time.perf_counter()
        if self.fix is not None:
            self.apply_fix("after_step", optimizer)
        self.s.step += 1
        step = self.s.step
        self.forward.narrow()  # the models of this step are known: hooks on them only from now
        self.rows.forget_pending()
        due = step <= 3 or step % self.evaluate_every == 0
        try:
            self.optim.after_step(step)
            self.later(self.loss.update_preds, step, self.sampled(step))
            if due or self.sampled(step):
                self._flush()
        finally:
            if due:  # under torchrun every rank reaches this at the same steps, whatever failed above
                distributed.reduce_signals(self.s)
        if due:
            for cb in list(self._evaluate_callbacks):
                cb(step)
        for cb in list(self._step_callbacks):
            cb(step)
        self.cost.own += time.perf_counter() - started
        if due and step > 3:
            share = self.cost.check(started)
            if step > PACE_FROM_STEP:
                self._pace(share)

    def scaler_step(self, scaler: Any, optimizer: torch.optim.Optimizer, taken: bool) -> None:
        """``GradScaler.step(optimizer)`` returned; ``taken``: it ran the optimizer's step.

        A step the scaler skips (inf/NaN in the unscaled gradients) never
        reaches the optimizer's hooks, yet it is a step of the user's loop: it
        goes through the step clock like a taken one, without the gradient
        norms and update ratios a skipped step does not have, so that a run
        whose every step is skipped is judged on its steps (O009 names the
        scaler), not left inconclusive for want of any.
        """
        self.optim.scaler_stepped(scaler, optimizer, taken)
        if taken:
            return
        self.optim.skipped = True
        try:
            self.step_pre(optimizer)
            self.step_post(optimizer)
        finally:
            self.optim.skipped = False

    def _pace(self, share: float | None) -> None:
        """Sample (and evaluate) half as often when defib's share of the run's time is over budget, twice as
        often again when it is well under, never less often than every ``MAX_SLOWDOWN`` x the configured period.

        A fast step (a GPU) makes defib's fixed work per sampled step a larger share; a slow one (a CPU) keeps
        the configured period. The first PACE_FROM_STEP steps, where collapses happen and are announced (the
        fault benchmark's median first finding is at step 2), always keep it, so that when defib speaks does
        not depend on the machine's speed there; what a long run pays is bounded after them. Under torchrun the ranks' clocks differ and they must agree on the steps where
        they exchange signals, so the period stays fixed there.
        """
        if share is None or distributed.world_size() > 1:
            return
        if share > COST_BUDGET and self.sample_every < MAX_SLOWDOWN * self.base_every:
            self.sample_every, self.evaluate_every = 2 * self.sample_every, 2 * self.evaluate_every
        elif share < COST_BUDGET / 4 and self.sample_every > self.base_every:
            self.sample_every, self.evaluate_every = self.sample_every // 2, self.evaluate_every // 2
        self.s.config["sample_every_now"] = self.sample_every

    # ------------------------------------------------------------------ the end
    def detach(self) -> None:
        """Remove the hooks the watcher put on the models themselves (the global ones are hooks.Installed's)."""
        self.model.detach()

    def finalize_signals(self) -> Signals:
        """The signals with the statistics that are computed only when the rules read them."""
        self.flush()
        self.loss.update_slow_stats()
        self.optim.finalize()
        self.model.finalize()
        return self.s
