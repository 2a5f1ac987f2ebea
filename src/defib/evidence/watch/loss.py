"""Evidence from the training loss: its calls, the predictions and targets reaching it, the constant-predictor baseline.

The loss call is the one place where predictions and targets meet, so the
windows of recent predictions and targets live here, and so do the target
statistics the data rules read (within-batch variance, batch-mean
autocorrelation). Values accumulate between optimizer steps and are closed
into the step's series by the watcher's step clock (:meth:`LossEvidence.close_step`,
:meth:`LossEvidence.update_preds`).
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter, deque
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from defib.evidence.callsite import is_user_file, make_where, user_frame, where_here
from defib.evidence.provenance import labels_key_line, origin_line
from defib.evidence.stats import Moments, Window
from defib.evidence.watch.graph import GraphLoss
from defib.evidence.watch.guard import Part, guarded
from defib.evidence.watch.pred_series import add_class_shares, add_quantiles, entropy_share
from defib.signals.run import CLASS_LOSSES, MULTILABEL_LOSSES, REGRESSION_LOSSES, TOKEN_TASK, LossSignals, PredSignals

# grad_fn names that only reshape or copy: walked through to find what produced the loss input
_PASS_THROUGH = ("View", "Squeeze", "Unsqueeze", "Reshape", "Expand", "Select", "Slice", "Clone", "ToCopy",
                 "Transpose", "Permute", "Alias", "Unsafe", "Index", "Flatten", "Contiguous")
# ... of which those that keep every token of a [B, T, K] tensor as rows (or pick tokens by a mask)
_TOKEN_ROWS = ("View", "Reshape", "Unsafe", "Flatten", "Index", "Slice")
MAX_STEP_LOSSES = 1024  # loss values kept between two optimizer steps (bounded if no step ever comes)
MIN_GRADIENT_ROWS = 4   # a batch this small says too little about what its examples share
SAME_PUSH = 0.01        # gradients within this share of the batch's largest one are the same push


class LossEvidence(Part):
    """Loss values, prediction and target windows; fills ``s.loss`` and ``s.preds``."""

    def __init__(self, watcher: Any, window: int):
        super().__init__(watcher)
        self._pred_window = Window(window)
        self._batch_pred_std: deque = deque(maxlen=16)  # within-batch prediction std, recent batches
        # multilabel, per label: positives among the targets seen, and (rows, predicted positives) of recent batches
        self._label_pos: np.ndarray | None = None
        self._label_rows = 0
        self._batch_pred_pos: deque = deque(maxlen=16)
        # BCE on one output per row against scores, not 0/1 labels (a cross-encoder regressed through the loss's
        # sigmoid): its spread is judged against the scores' own, not against 0/1 labels at their mean rate
        self._scored_rows = False
        self._target_window = Window(window)
        self._targets = Moments()
        self._label_counts: Counter = Counter()
        self._pred_classes: Window = Window(window)
        self._batch_means: list[float] = []
        self._batch_vars: list[float] = []
        self._step_losses: list[float] = []
        self._loss_window: Window = Window(32)  # steps: long enough to average out batch noise
        self._backward_values: list[float] = []
        self._last_raw_loss = 1.0  # the loss function's own output, before any per-example normalisation
        # a library loss's constant-predictor loss, batch by batch (it depends on each batch: its size, its ties)
        self._batch_baselines: Window = Window(64)
        self._gradient_step = -1  # the optimizer step whose loss gradient on the predictions is being read

    @guarded
    def loss_module_created(self, module: nn.Module) -> None:
        """``nn.MSELoss(reduction="sum")`` and friends: remember the line, for findings about the reduction."""
        frame = user_frame(4)
        if frame is None:
            module._defib_where = module._defib_site = None
            return
        # the construction call itself, to follow its weight= / pos_weight= argument once the loss is called (a
        # subclass sets its weights after the base __init__ this runs from: they are not there yet)
        file, line = module._defib_site = (frame.f_code.co_filename, frame.f_lineno)
        module._defib_where = make_where(file, origin_line(file, line, "reduction", getattr(module, "reduction", None)))

    @guarded
    def loss_call(self, fn: str, input: Any, target: Any, result: Any, kwargs: dict) -> None:
        s = self.w.s
        if not (self.w._grad and isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor)):
            return
        if not input.requires_grad and not torch.is_tensor(result):
            return
        family = ("regression" if fn in REGRESSION_LOSSES else "classification" if fn in CLASS_LOSSES
                  else "multilabel" if fn in MULTILABEL_LOSSES else None)
        if family is None:
            return
        ls = s.loss
        if ls is None or ls.fn != fn:
            if ls is not None and ls.calls > 5:
                return  # a second loss function: the first one is the training loss
            ls = s.loss = LossSignals(fn=fn, family=family)
            ls.where = where_here(skip=4)
            ls.reduction = str(kwargs.get("reduction", "mean"))
            ls.input_requires_grad = bool(input.requires_grad)
            ls.producer = _grad_fn_chain(input.grad_fn)
            ls.producer_where = self.w.model.activation_where(input.grad_fn)
            ls.bounded_input = self.w.model.bounded_range(input.grad_fn)
            module = _loss_module()
            ls.module_where = getattr(module, "_defib_where", None)
            weighted_by = next((k for k in ("pos_weight", "weight") if kwargs.get(k) is not None), None)
            site = getattr(module, "_defib_site", None)
            ls.weight_where = (None if weighted_by is None
                               else make_where(site[0], origin_line(site[0], site[1], weighted_by)) if site
                               else where_here(keyword=weighted_by, skip=4))
            # a loss a library computes (sentence-transformers, a model's own labels=) is called from no user line
            ls.label_where = self._labels_where(ls.where) if _called_by_user() else self._library_labels_where(ls.where)
        ls.calls += 1
        if ls.calls == 1 and family == "classification":  # shapes only: nothing read on the host
            ls.per_token = _per_token(input)
            ls.ignore_index = int(kwargs.get("ignore_index", -100)) if fn in CLASS_LOSSES else None
        self.w.rows.loss_targets(family, ls.per_token, input, target)
        if ls.per_token and ls.ignore_index is not None and self.w.sampling():
            self.w.data.token_labels(target, ls.ignore_index)
        ls.input_shape, ls.target_shape = tuple(input.shape), tuple(target.shape)
        ls.target_dtype = str(target.dtype).replace("torch.", "")
        ls.weighted = ls.weighted or kwargs.get("weight") is not None or kwargs.get("pos_weight") is not None
        pos_weight = kwargs.get("pos_weight")
        if ls.pos_weight is None and isinstance(pos_weight, torch.Tensor) and family == "multilabel":
            self.w.later(self._note_pos_weight, ls, pos_weight.detach().clone())
        if family != "classification" and input.shape != target.shape and input.numel() != 1:
            ls.broadcast_calls += 1
        # read later (Watcher.later): copies, so that a buffer the script refills cannot change them meanwhile
        value = result.detach() if torch.is_tensor(result) and result.numel() == 1 else None
        y = target.detach().clone()
        self.w.later(self._values, ls, family, s.step + 1, value, input.detach().clone(), y)
        if family == "regression" and input.requires_grad:
            self._watch_gradient(ls, input.grad_fn, input.output_nr, y)

    def _watch_gradient(self, ls: LossSignals, node: Any, output: int, target: torch.Tensor) -> None:
        """On a sampled step, have ``backward()`` hand over the loss's gradient on the predictions (output ``output``
        of the autograd node ``node``), for ``ls.grad_saturated``: once a step, the step's first loss."""
        step = self.w.s.step + 1
        if node is None or step == self._gradient_step or not self.w.sampling() or torch.compiler.is_compiling():
            return
        self._gradient_step = step
        taken: list[bool] = []

        def take(grad_outputs: tuple) -> None:
            # inside the user's backward: hands the tensor over and returns None, so the gradient is left as it is
            try:
                g = grad_outputs[output] if not taken else None
                if g is not None:
                    taken.append(True)
                    self.w.later(self._gradient_saturated, ls, step, g.detach(), target)
            except Exception as exc:  # defib must never stop the user's backward
                self.w.record_internal_error("loss_gradient", exc)

        node.register_prehook(take)

    def _gradient_saturated(self, ls: LossSignals, step: int, g: torch.Tensor, y: torch.Tensor) -> None:
        """Read at a flush: the share of examples whose gradient ``g`` is one saturated push (``grad_saturated``)."""
        if g.numel() != y.numel() or g.numel() < MIN_GRADIENT_ROWS:
            return  # a broadcast (L001's): the gradient's rows are not the targets'
        g, y = g.float().reshape(-1), y.float().reshape(-1)
        top = g.abs().max()
        if not bool(torch.isfinite(top)) or float(top) == 0:
            return
        share = 0.0
        for side in (g >= (1 - SAME_PUSH) * top, g <= -(1 - SAME_PUSH) * top):
            pushed = y[side]
            if pushed.numel() > 1 and float(pushed.max() - pushed.min()) > 0:  # targets that differ, pushed alike
                share = max(share, float(side.float().mean()))
        ls.grad_saturated.add(step, share)

    def _values(self, ls: LossSignals, family: str, step: int, result: torch.Tensor | None,
                x: torch.Tensor, y: torch.Tensor) -> None:
        """The values of one loss call (``step``: the optimizer step it belongs to), read at a flush."""
        if result is not None:
            value = self._last_raw_loss = float(result)
            if ls.reduction == "sum" and y.numel():
                value /= y.numel() if family != "classification" else max(1, y.shape[0])  # per example
            if math.isfinite(value):
                ls.first = value if ls.first is None else ls.first
                self._step_losses.append(value)
                del self._step_losses[:-MAX_STEP_LOSSES]
            elif ls.nonfinite_step is None:
                ls.nonfinite_step = step
                self.w.optim.signals().nonfinite.setdefault("loss", step)
        self._record_predictions(family, x, y)

    def graph_loss(self, found: GraphLoss, where: Callable[[], Any], assigned: Callable[[], Any]) -> None:
        """A hand-written loss read from ``backward()``'s graph (:mod:`.graph`): the path of a hooked call.

        Runs inside ``optim.backward_pre``'s guard. The signals come from the graph where a hooked
        call reads its arguments: the line that computes the loss (``where()``), the node that
        made the predictions. ``assigned()``: the line that assigns the loss, whose call
        (``loss = huber(pred, y[idx])``) shows where the targets come from when ``where()`` is
        inside a loss function of the user's.
        """
        ls = self.w.s.loss
        if ls is not None and ls.source != "graph":
            return  # a hooked loss call is the training loss
        if ls is None or (ls.fn != found.fn and ls.calls <= 5):
            ls = self.w.s.loss = LossSignals(fn=found.fn, family=found.family, source="graph")
            ls.where = where()
            ls.input_requires_grad = True
            ls.producer = _grad_fn_chain(found.producer)
            ls.producer_where = self.w.model.activation_where(found.producer)
            ls.label_where = _label_where(ls.where) or self._labels_where(assigned())
        self.loss_call.__wrapped__(self, found.fn, found.input, found.target, found.value, {})
        if found.family == "regression" and ls is self.w.s.loss:
            self._watch_gradient(ls, found.producer, found.producer_output, found.target)

    def reduced_first(self, found: Any, where: Callable[[], Any]) -> None:
        """A hand-written loss that reduces ``pred - y`` over the batch before its abs or square (:mod:`.graph`).

        No targets reach defib through it, so only the loss's shape is recorded: L002 names it.
        """
        ls = self.w.s.loss
        if ls is not None and not ls.reduced_first:
            return  # a loss read some other way is the training loss
        if ls is None:
            ls = self.w.s.loss = LossSignals(fn=found.fn, family="regression", source="graph", reduced_first=True)
            ls.where = where()
            ls.input_requires_grad = True
            ls.producer = _grad_fn_chain(found.producer)
        ls.calls += 1

    def library_loss(self, fn: str, input: torch.Tensor, target: torch.Tensor | None, value: torch.Tensor,
                     baseline: torch.Tensor | float, where: Any) -> None:
        """A library's own loss module, read by its patch (:mod:`.sentence`): the scores it compares, the targets.

        Runs inside the caller's guard. ``input``: the similarity scores; ``target``: the labels on the
        scores' scale, None when the loss takes none (in-batch negatives); ``baseline``: this batch's loss
        for scores that are all equal. A hooked loss call made inside the module has the predictions already.
        """
        ls = self.w.s.loss
        if ls is not None and ls.source != "library" and ls.calls:
            return
        if ls is None or ls.fn != fn:
            if ls is not None and ls.calls > 5:
                return  # a second loss: the first one is the training loss
            ls = self.w.s.loss = LossSignals(fn=fn, family="regression", source="library")
            ls.where = where
            ls.input_requires_grad = True
            ls.label_where = self.w.sentence.examples_where()  # its line is the user's call into the library
        ls.calls += 1
        ls.input_shape = tuple(input.shape)
        ls.target_shape = tuple(target.shape) if target is not None else ()
        ls.target_dtype = str(target.dtype).replace("torch.", "") if target is not None else ""
        y = target.detach().clone() if target is not None else input.new_empty(0)
        self.w.later(self._values, ls, "regression", self.w.s.step + 1, value.detach(), input.detach().clone(), y)
        self.w.later(self._batch_baseline, baseline)

    @staticmethod
    def _note_pos_weight(ls: LossSignals, w: torch.Tensor) -> None:
        ls.pos_weight = [float(x) for x in w.float().reshape(-1).cpu()]

    def _labels_where(self, loss_where: Any) -> Any:
        """The targets' line: followed in the source from the loss call, else the line that built the examples
        (sentence-transformers' ``InputExample(label=...)``; its loss call is inside the library)."""
        return _label_where(loss_where) or self.w.sentence.examples_where()

    def _library_labels_where(self, loss_where: Any) -> Any:
        """The targets' line for a loss computed inside a library: the line that built the examples or the labels
        column (sentence-transformers), else the one line of the user's file that puts values under ``labels``
        (what a transformers model reads them from). Not the loss call's own arguments: ``trainer.train()``
        passes no targets."""
        found = self.w.sentence.examples_where()
        if found is None and loss_where is not None:
            path = os.path.abspath(loss_where.file)
            line = labels_key_line(path)
            found = make_where(path, line) if line else None
        return found

    def _batch_baseline(self, value: torch.Tensor | float) -> None:
        self._batch_baselines.extend(np.array([float(value)]))

    def _record_predictions(self, family: str, x: torch.Tensor, y: torch.Tensor) -> None:
        s = self.w.s
        if s.preds is None:
            s.preds = PredSignals(task=family)
            s.task = TOKEN_TASK if family == "classification" and s.loss.per_token else family
        p = s.preds
        if family == "regression":
            xs, ys = _np(x), _np(y)
            self._pred_window.extend(xs)
            if xs.size >= 2:
                self._batch_pred_std.append(float(np.std(xs)))
            self._note_targets(ys)
            p.n_seen += xs.size
        elif family == "classification":
            if x.ndim < 2:
                return
            k = x.shape[1]
            logits = x.movedim(1, -1).reshape(-1, k).float()
            p.n_classes = k
            ls = s.loss
            if y.is_floating_point() and y.shape == x.shape:  # soft / one-hot targets
                labels = y.movedim(1, -1).reshape(-1, k).argmax(-1)
                # the targets noted below are argmax ids: keep the soft values' own range for the rules
                top = float(y.float().max())
                ls.soft_target_max = top if ls.soft_target_max is None else max(ls.soft_target_max, top)
            else:
                labels = y.reshape(-1)
                if ls.ignore_index is not None and labels.shape[0] == logits.shape[0]:
                    # what the loss ignores (padding, the later word pieces of a word) is no prediction of a label
                    kept = labels != ls.ignore_index
                    p.ignored += int(labels.shape[0] - kept.sum())
                    logits, labels = logits[kept], labels[kept]
            self._pred_classes.extend(logits.argmax(-1).cpu().numpy().astype(np.float64))
            lab = labels.cpu().numpy()
            self._note_targets(lab.astype(np.float64))
            self._label_counts.update(lab.astype(np.int64).tolist())
            p.n_seen += logits.shape[0]
            rows = logits.sum(-1)
            ok = (logits.min(-1).values >= 0) & ((rows - 1).abs() < 1e-3)
            share = float(ok.float().mean())
            ls.prob_rows_share = share if ls.prob_rows_share is None else 0.9 * ls.prob_rows_share + 0.1 * share
            if ls.fn == "nll_loss":
                logp = float((logits.logsumexp(-1).abs() < 1e-3).float().mean())
                ls.logprob_rows_share = logp if ls.logprob_rows_share is None else \
                    0.9 * ls.logprob_rows_share + 0.1 * logp
        else:  # multilabel
            xs, ys = _np(x), _np(y)
            self._pred_window.extend(xs)
            self._note_targets(ys)
            p.n_seen += xs.size
            ls = s.loss
            if ls.fn == "binary_cross_entropy_with_logits":
                share = float(((xs >= 0) & (xs <= 1)).mean())
                ls.unit_interval_share = share if ls.unit_interval_share is None else \
                    0.9 * ls.unit_interval_share + 0.1 * share
            logits = ls.fn == "binary_cross_entropy_with_logits"
            one_output = x.ndim == 1 or (x.ndim == 2 and x.shape[1] == 1)
            if one_output and x.numel() == y.numel() and x.shape[0] > 1 and \
                    (self._scored_rows or not np.isin(ys, (0.0, 1.0)).all()):
                self._scored_rows = True
                prob = torch.sigmoid(x.float()) if logits else x.float()
                self._batch_pred_std.append(float(prob.std()))
            elif one_output and x.shape == y.shape[:1] and x.shape[0] > 1:  # [B] logits, [B] 0/1 labels
                self._per_label(x.unsqueeze(1), y.unsqueeze(1), logits=logits)
            elif x.ndim == 2 and x.shape == y.shape and x.shape[0] > 1:
                self._per_label(x, y, logits=logits)

    def _per_label(self, x: torch.Tensor, y: torch.Tensor, logits: bool) -> None:
        """A [B, K] multilabel batch by label: the targets' positives, the predictions above 0.5 and their spread
        within the batch (in probabilities: a per-label bias makes logits differ between labels, not rows)."""
        prob = torch.sigmoid(x.float()) if logits else x.float()
        pos = _np(y.float().sum(0)).astype(np.float64)
        if self._label_pos is None or self._label_pos.shape != pos.shape:
            self._label_pos, self._label_rows, self._batch_pred_pos = np.zeros_like(pos), 0, deque(maxlen=16)
        self._label_pos += pos
        self._label_rows += y.shape[0]
        self._batch_pred_pos.append((y.shape[0], _np((prob > 0.5).float().sum(0))))
        self._batch_pred_std.append(float(prob.std(0).mean()))

    def _note_targets(self, ys: np.ndarray) -> None:
        self._targets.add(ys.astype(np.float64))
        self._target_window.extend(ys)
        fin = ys[np.isfinite(ys)]
        if fin.size < ys.size:
            self.w.s.preds.target_nonfinite += int(ys.size - fin.size)
            self.w.s.preds.target_infinite += int(np.isinf(ys).sum())
        if fin.size:
            self._batch_means.append(float(fin.mean()))
            self._batch_vars.append(float(fin.var()) if fin.size > 1 else math.nan)
            if len(self._batch_means) > 4096:
                del self._batch_means[:2048]
                del self._batch_vars[:2048]
            p = self.w.s.preds
            integral = bool(np.all(fin == np.round(fin)))
            p.target_integer = integral if p.target_integer is None else (p.target_integer and integral)

    def loss_failed(self, fn: str, input: Any, target: Any, kwargs: dict, exc: BaseException) -> None:
        """The loss raised: keep what it was given, so the crash gets a diagnosis."""
        self.loss_call(fn, input, target, None, kwargs)
        ls = self.w.s.loss
        if ls is not None and ls.fn == fn:
            ls.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            self._refresh_preds()

    @guarded
    def _refresh_preds(self) -> None:
        """Read what was put off and copy the labels and targets seen into the signals now: after a crashed loss
        no step will."""
        self.w._flush()
        self.update_preds(self.w.s.step, self.w.sampling())

    def backward_value(self, tensor: torch.Tensor, step: int) -> None:
        """What ``backward()`` was called on (read at a flush): against the loss function's own output, it shows
        the loss's scaling."""
        value = float(tensor)
        self._backward_values.append(value)
        del self._backward_values[:-MAX_STEP_LOSSES]
        if not math.isfinite(value):
            self.w.optim.signals().nonfinite.setdefault("loss", step)

    def close_step(self, step: int) -> None:
        """Before optimizer step ``step``: the mean of this step's losses joins the series."""
        ls = self.w.s.loss
        if self._step_losses:
            value = float(np.mean(self._step_losses))
            if ls is not None:
                ls.values.add(step, value)
            self._loss_window.extend(np.array([value]))
        if self._backward_values and self._step_losses and ls is not None:
            ratio = abs(self._backward_values[-1]) / max(abs(self._last_raw_loss), 1e-30)
            ls.scale_factor = ratio
        self._step_losses.clear()
        self._backward_values.clear()

    def update_preds(self, step: int, sampled: bool = False) -> None:
        """After optimizer step ``step``: the prediction window against the targets, into ``s.preds``.

        ``sampled``: ``step`` was a sampled step (the watcher's clock), when the distributions are recorded too.
        """
        p = self.w.s.preds
        if p is None:
            return
        t = self._targets
        p.target_mean, p.target_std = t.mean if t.n else None, t.std if t.n else None
        p.target_min, p.target_max = (t.lo, t.hi) if t.n else (None, None)
        if p.task == "classification":
            preds = self._pred_classes.array().astype(np.int64)
            p.pred_counts = dict(Counter(preds.tolist()))
            p.label_counts = dict(self._label_counts)
            p.spread.add(step, entropy_share(p.pred_counts, p.label_counts))
            if sampled and preds.size:
                add_class_shares(p.class_share, step, p.pred_counts, preds.size)
        else:
            if p.task == "multilabel":
                self._label_rates()
            w = self._pred_window.array()
            w = w[np.isfinite(w)]
            if w.size:
                p.window_std, p.window_mean = float(w.std()), float(w.mean())
                ref = self._label_std() if p.task == "multilabel" and not self._scored_rows else p.target_std
                if self._batch_pred_std:
                    # within-batch spread: blind to the drift of a bias chasing batch means
                    p.batch_std = float(np.mean(self._batch_pred_std))
                    if ref:  # none when the loss takes no labels (in-batch negatives)
                        p.spread.add(step, p.batch_std / ref)
                if sampled:
                    add_quantiles(p.pred_quantiles, step, w)
                    ys = self._target_window.array()
                    add_quantiles(p.target_quantiles, step, ys[np.isfinite(ys)])
        if len(self._loss_window):
            p.loss_window.add(step, float(self._loss_window.array().mean()))
        base = self.baseline()
        if base is not None:
            p.baseline.add(step, base)
            if self.w.s.loss is not None:
                self.w.s.loss.baseline = base

    def update_slow_stats(self) -> None:
        """Statistics only the rules read: computed when they run, not at every step."""
        p, t = self.w.s.preds, self._targets
        if p is None:
            return
        if p.task != "classification":
            p.recent_preds = self._pred_window.array().tolist()
            p.recent_targets = self._target_window.array().tolist()
        d = self.w.data.signals()
        if len(self._batch_means) >= 8 and t.n and t.var > 0:
            vars_ = np.array(self._batch_vars)
            vars_ = vars_[np.isfinite(vars_)]
            d.within_batch_var_ratio = float(vars_.mean() / t.var) if vars_.size else None
            bm = np.array(self._batch_means[-512:])
            if bm.std() > 0:
                d.batch_mean_autocorr = float(np.corrcoef(bm[:-1], bm[1:])[0, 1])

    def baseline(self) -> float | None:
        """Loss of the best constant predictor on the targets seen so far."""
        ls, t = self.w.s.loss, self._targets
        if ls is not None and ls.source == "library":
            return float(self._batch_baselines.array().mean()) if len(self._batch_baselines) else None
        if ls is None or not t.n:
            return None
        if ls.fn == "mse_loss":
            return t.var
        if ls.fn in ("l1_loss", "smooth_l1_loss", "huber_loss"):
            return float(np.mean(np.abs(self._target_window.array() - t.mean))) if len(self._target_window) else None
        if ls.fn in CLASS_LOSSES:
            counts = np.array(list(self._label_counts.values()), dtype=np.float64)
            q = counts / counts.sum()
            return float(-(q * np.log(q)).sum())
        if ls.fn in MULTILABEL_LOSSES:
            # the best constant predicts each label's own rate; one rate for all only when labels are not columns
            rates = self._label_pos / self._label_rows if self._label_rows else np.array([t.mean])
            p = np.clip(rates, 1e-6, 1 - 1e-6)
            w = np.asarray(ls.pos_weight or [1.0], dtype=np.float64)
            if w.size not in (1, p.size):
                w = np.ones(1)  # a pos_weight that broadcasts some other way: the unweighted prior
            # with pos_weight w the loss weighs each positive w times, and the best constant is w p / (w p + 1 - p)
            q = np.clip(w * p / (w * p + 1 - p), 1e-6, 1 - 1e-6)
            return float(np.mean(-(w * p * np.log(q) + (1 - p) * np.log(1 - q))))
        return None

    def _label_std(self) -> float | None:
        """Multilabel: the mean over labels of the 0/1 targets' std (each label's own rate)."""
        if not self._label_rows:
            return None
        q = np.clip(self._label_pos / self._label_rows, 0.0, 1.0)  # targets outside 0..1 are another rule's finding
        return float(np.mean(np.sqrt(q * (1 - q))))

    def _label_rates(self) -> None:
        """Multilabel: each label's positive rate among the targets seen and among the recent predictions."""
        p = self.w.s.preds
        if not self._label_rows:
            return
        p.label_pos_rate = (self._label_pos / self._label_rows).tolist()
        rows = sum(n for n, _ in self._batch_pred_pos)
        p.pred_pos_rate = (sum(c for _, c in self._batch_pred_pos) / rows).tolist() if rows else []


def _label_where(loss_where: Any) -> Any:
    """The line that produced the targets of the loss call at ``loss_where`` (see provenance.label_line)."""
    from defib.evidence.provenance import label_line

    if loss_where is None:
        return None
    path = os.path.abspath(loss_where.file)
    line = label_line(path, loss_where.line)
    return make_where(path, line) if line else None


def _called_by_user() -> bool:
    """Whether the torch loss being read was called from the user's code (directly, or through an ``nn.*Loss``
    module): only then does the user's line hold the loss call whose targets provenance can follow."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if is_user_file(path):
            return True
        if not (path.startswith(_DEFIB_DIR) or path.startswith(_TORCH_DIR)):
            return False  # another library's code made the call
        frame = frame.f_back
    return False


_DEFIB_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


def _loss_module(depth: int = 8) -> Any:
    """The loss module whose forward made this functional loss call, if any."""
    frame = sys._getframe(1)
    for _ in range(depth):
        frame = frame.f_back
        if frame is None:
            return None
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "forward" else None
        if isinstance(owner, nn.modules.loss._Loss):
            return owner
    return None


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().reshape(-1).cpu().numpy()


def _per_token(x: torch.Tensor) -> bool:
    """Whether a classification loss input's rows are tokens: a [B, T, K] / [B, K, T] input, or [N, K] rows that
    a view or an index made from such a tensor (``logits.view(-1, K)``, ``logits[mask]``), read from the graph.

    A select (``logits[:, 0]``) picks one position of each sequence: a sequence's prediction, not a token's.
    """
    if x.ndim >= 3:
        return True
    fn = x.grad_fn
    for _ in range(6):
        name = type(fn).__name__ if fn is not None else ""
        if not name.startswith(_PASS_THROUGH):
            return False
        sizes = getattr(fn, "_saved_self_sym_sizes", None)
        if sizes is not None and len(sizes) >= 3:
            return name.startswith(_TOKEN_ROWS)
        nxt = [f for f, _ in fn.next_functions if f is not None]
        fn = nxt[0] if nxt else None
    return False


def _grad_fn_chain(fn: Any, depth: int = 6) -> tuple[str, ...]:
    """grad_fn names from the autograd node ``fn`` back, past reshapes, to the op that produced the values."""
    names: list[str] = []
    while fn is not None and len(names) < depth:
        name = type(fn).__name__
        names.append(name)
        if not name.startswith(_PASS_THROUGH):
            break  # the op that produced the values, past any reshapes
        nxt = [f for f, _ in fn.next_functions if f is not None]
        fn = nxt[0] if nxt else None
    return tuple(names)
