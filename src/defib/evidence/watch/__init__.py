"""The framework-free watch core: events in, :class:`~defib.signals.run.Signals` out.

The global hooks (:mod:`defib.evidence.hooks`), the one-line ``defib.watch``
and the Trainer/Lightning callbacks all translate what they see into calls on
one :class:`Watcher`. Every event handler observes detached tensors under
``no_grad``, never changes what it is given, and is wrapped by
:func:`~defib.evidence.watch.guard.guarded`, so a bug in defib becomes an
internal-error finding instead of a crash in the user's run. Memory stays
bounded: series downsample, windows are rings, sets of parameter ids are
bounded by the model.

The layout: the :class:`Watcher` (``watcher.py``) owns the step clock
(``s.step``, which steps are sampled, when the evaluation callbacks run), the
guard's state and the confirmation fix; four parts each own one kind of
evidence and its private state, and write into the watcher's ``s``:

* ``watcher.model`` (``model.py``): the models, their forward pass, the head's
  input, the encoder's output spread, the user's ``nn.init`` and activation calls;
* ``watcher.loss`` (``loss.py``): loss calls, the prediction and target
  windows, the constant-predictor baseline;
* ``watcher.optim`` (``optim.py``): optimizers, backward, zero_grad,
  gradients, update ratios, the scheduler;
* ``watcher.data`` (``data.py``): DataLoaders, batches (padding, masks), tokenizer calls.

Two things keep watching cheap at any model size (``bench/overhead``): the
module forward hooks sit on every module only until the watched optimizer
steps, then only on the modules that matter (``forward.py``); and no handler
reads a tensor's value on the host between sampled steps: values go to
``Watcher.later`` and are read together at the next sampled step or
evaluation point, so a GPU is never made to wait (``watcher.py``).

A loss written with tensor ops calls nothing defib hooks: ``graph.py`` reads
its predictions and targets from the autograd graph ``backward()`` receives
(``optim.backward_pre`` walks it, ``loss.graph_loss`` takes what it found down
the path of a hooked loss call), helped by a mark ``Watcher.forward_post``
leaves on small module outputs.

The hooks call the part that owns an event directly (``w.loss.loss_call``,
``w.optim.backward_pre``, ``w.data.loader_created``); event methods keep their
names, which are also what an internal error is reported under. Only the
events that concern several parts go through the watcher: the module forward
hooks (``forward_pre``/``forward_post``) and the optimizer step hooks
(``step_pre``/``step_post``).

One regression batch, from hook to signal: the outermost model call ends in
``Watcher.forward_post``, which hands the batch's ``input_ids`` and mask to
``data.training_batch`` (``s.data``); ``F.mse_loss``'s wrapper calls
``loss.loss_call``, which records the loss call and puts off reading its value,
predictions and targets (``s.loss``, the windows) until the next flush; ``Tensor.backward`` calls
``optim.backward_pre``/``backward_post``; the optimizer's pre-step hook calls
``Watcher.step_pre`` (``optim.before_step``: gradients; ``loss.close_step``:
the step's loss), its post-step hook ``Watcher.step_post`` (the step count,
``optim.after_step``: update ratios; ``loss.update_preds``: ``s.preds.spread``)
and, at evaluation points, the callbacks that run the rules
(:mod:`defib.stages.run`).

The evidence never judges: the rules, the diagnosis and the report are the
stages' business, above this package.
"""

from defib.evidence.watch.watcher import Watcher

__all__ = ["Watcher"]
