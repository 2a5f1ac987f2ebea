"""The run stage: a watched training run's diagnosis, during training and at its end, and its report's series.

Every entry point that watches a run (``defib.watch``, the Trainer and
Lightning callbacks, the child process of ``defib run``) builds a
:class:`~defib.evidence.watch.Watcher`, attaches a :class:`LiveDiagnosis`
to it, and asks :func:`final_diagnosis` at the end.

The watched side of ``defib run`` (:func:`start`): ``defib run`` starts the
user's command with ``defib/_boot`` on PYTHONPATH and ``DEFIB_REPORT_DIR``
set. Each Python process that imports torch writes one report,
``report.<pid>.json``, when it exits (normally, by an exception, or stopped
by ``--max-steps``); the parent picks the process that trained.

A process can die without running its exit handlers: SIGKILL (the OOM
killer), or SIGTERM with its default action. So the training process also
writes its report during training, at the evaluation points at most every
``CHECKPOINT_SECONDS`` (marked ``partial``), and a SIGTERM it has no handler
for writes the report before the process dies of it as it would have anyway.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

from defib.diagnosis import FLATLINE_CODE, Diagnosis, diagnose
from defib.evidence import params as P
from defib.evidence.distributed import is_main_process
from defib.evidence.hooks import install
from defib.evidence.hooks.patching import PostImport
from defib.evidence.watch import Watcher
from defib.rules import thresholds
from defib.rules.base import Severity
from defib.rules.fmt import num

STEPS_ENV = "DEFIB_STEPS"
IGNORE_ENV = "DEFIB_IGNORE"  # comma-separated rule codes left out of every diagnosis (--ignore)
REPORT_ENV = "DEFIB_REPORT_DIR"
FIX_ENV = "DEFIB_FIX"  # JSON fix spec (defib.fixes.plan) for a --confirm rerun
LABEL_CONTROL_ENV = "DEFIB_LABEL_CONTROL"  # 0: no label control at the end of a run (on by default)
LABEL_CONTROL_CODE = "D010"  # the rule that judges it: --ignore D010 skips the control too
LOG_TO_ENV = "DEFIB_LOG_TO"  # --log-to: the experiment tracker the run's defib series go to (integrations/trackers)
CHECKPOINT_SECONDS = 5.0  # the training process rewrites its report at most this often (at evaluation points)
CHECKPOINT_SHARE = 0.005  # ... and spends at most this share of the run's time doing it (watching's whole
# budget is 2%: bench/overhead)
REPEAT_SECONDS = 2.0  # a second SIGINT this soon after the first is the same stop delivered twice


def stderr_announce(msg: str) -> None:
    """Print one announcement on stderr, from rank 0 only (every rank sees the same reduced figures)."""
    if is_main_process():
        print(msg, file=sys.stderr, flush=True)


class LiveDiagnosis:
    """The rules, run at the watcher's evaluation points: remembers when each finding first fired.

    With ``announce``, a flatline is announced when it is first diagnosed, and
    a recovery when the predictions spread out again. ``ignore``: rule codes
    left out (``--ignore``), during training as in the final diagnosis.
    Callbacks given to :meth:`on_diagnosis` get each evaluation point's
    diagnosis (the experiment trackers, ``integrations/trackers``), so the
    rules run once per point whoever reads them.
    """

    def __init__(self, watcher: Watcher, announce: Callable[[str], None] | None = None, *,
                 ignore: tuple[str, ...] = ()):
        self.watcher = watcher
        self.announce = announce
        self.ignore = ignore
        self.first_fired: dict[str, int] = {}
        self._flatline_announced = False
        self._listeners: list[Callable[[int, Diagnosis], None]] = []
        self.latest: Diagnosis | None = None  # the last evaluation's diagnosis, for a live display
        watcher.on_evaluate(self.evaluate)

    def on_diagnosis(self, callback: Callable[[int, Diagnosis], None]) -> None:
        """Call ``callback(step, diagnosis)`` after each evaluation point's diagnosis."""
        self._listeners.append(callback)

    def evaluate(self, step: int) -> Diagnosis:
        """Run the rules on what is known now; remember when each first fired."""
        d = diagnose(self.watcher.finalize_signals(), first_fired=self.first_fired, ignore=self.ignore)
        self.latest = d
        if d.verdict == "flatlined" and not self._flatline_announced and self.announce is not None:
            self._flatline_announced = True
            top = d.findings[0] if d.findings else None
            f = d.flatline or {}
            msg = (f"defib: predictions flatlined at step {f.get('step')} "
                   f"(prediction spread {num(f.get('pred_std'))} vs targets {num(f.get('target_std'))})")
            if top is not None and top.cause:
                msg += f"; likely cause: {top.cause} [{top.code}]"
            self.announce(msg)
        elif d.verdict != "flatlined" and FLATLINE_CODE in self.first_fired:
            # the predictions spread out again: a later collapse is a new one, with its own step
            del self.first_fired[FLATLINE_CODE]
            if self._flatline_announced and self.announce is not None:
                self._flatline_announced = False
                self.announce(f"defib: predictions recovered by step {step} (no longer flat)")
        for callback in self._listeners:
            callback(step, d)
        return d


def final_diagnosis(live: LiveDiagnosis, control: bool = True) -> Diagnosis:
    """The diagnosis of the whole run, with the steps each finding first fired at during it.

    ``control``: a flatline with no cause may run the label control first (see :func:`label_control`);
    False for a checkpoint written during training or on the way out of a signal.
    """
    w = live.watcher
    w.s.config["seconds"] = round(time.time() - w.started, 2)
    d = diagnose(w.finalize_signals(), first_fired=live.first_fired, ignore=live.ignore)
    if control and label_control(w, d, live.ignore, live.announce):
        d = diagnose(w.s, first_fired=live.first_fired, ignore=live.ignore)
    return d


def label_control(watcher: Watcher, d: Diagnosis, ignore: tuple[str, ...] = (),
                  say: Callable[[str], None] | None = None) -> bool:
    """Run the label control once, if this run flatlined with no cause in sight, or if a bi-encoder's own
    scores did not follow its labels; True if it was tried.

    On the training rows the watcher kept (evidence/watch/rows.py), encoded by a fresh copy of the encoder
    from its checkpoint folder, on the CPU, after training: the run itself is untouched
    (evidence/probes/label_control.py). About 5 s on MiniLM; a run with a cause in sight never pays for it,
    nor one that neither flatlined nor is a bi-encoder whose scores ignored its labels.

    Why a bi-encoder needs no flatline: trained on labels that do not belong, it keeps spread-out scores
    (its pretrained similarity, worn down) where a fresh head collapses. But it has no fresh head: its
    scores at the first steps, when the pairs were kept, are the pretrained model's read-out of each pair,
    so labels they follow (rank correlation, one-sided p <= LABELS_PREDICTED_P) belong to their texts and
    need no control; labels they do not follow are either a task the pretrained similarity does not read, or
    labels apart from their pairs, which the control tells apart.

    ``DEFIB_LABEL_CONTROL=0`` turns it off. ``say``: where its one-line note goes while it runs (the run's
    announcements).
    """
    s = watcher.s
    explained = any(f.cause and f.severity >= Severity.WARNING for f in d.findings)
    if (s.label_control is not None or explained or LABEL_CONTROL_CODE in ignore
            or os.environ.get(LABEL_CONTROL_ENV, "1") == "0" or not is_main_process()):
        return False
    rows = watcher.rows
    followed = rows.scores_follow_labels()
    if d.verdict == "flatlined":
        trigger = "flatline"
    elif followed is not None and followed[1] > thresholds.LABELS_PREDICTED_P:
        trigger = "pair_scores"
    else:
        return False
    from defib.evidence.probes.label_control import run_label_control

    with watcher.paused():
        s.label_control = run_label_control(rows.rows, rows.task, rows.checkpoint, rows.encoder_params or 0,
                                            trigger=trigger, say=say or (lambda _msg: None))
    if followed is not None:
        s.label_control.scores_rho, s.label_control.scores_p = followed
    return True


# ------------------------------------------------------------------ the child process of ``defib run``
class StopTraining(SystemExit):
    """Raised from the optimizer's post-step hook when ``--max-steps`` is reached."""


def start(extend: Callable[[LiveDiagnosis], None] | None = None) -> None:
    """Attach a watcher to this process once torch is imported (``_boot/sitecustomize.py`` calls this).

    ``extend(live)``: what an entry point adds to the live diagnosis (the
    experiment trackers), called once it exists; an entry point lives above
    this stage, so it hands its addition down rather than being imported.
    """
    finder = PostImport({"torch": lambda torch_module: _attach_after_torch(torch_module, extend)})
    finder.install()


def _ignored() -> tuple[str, ...]:
    return tuple(code.strip().upper() for code in os.environ.get(IGNORE_ENV, "").split(",") if code.strip())


def _attach_after_torch(_torch_module: Any, extend: Callable[[LiveDiagnosis], None] | None = None) -> None:
    # torch finished importing; its submodules are importable now
    watcher = Watcher()
    live = LiveDiagnosis(watcher, stderr_announce, ignore=_ignored())
    if extend is not None:
        try:
            extend(live)
        except Exception as exc:  # an addition that fails leaves the watch itself whole
            watcher.record_internal_error("extend", exc)
    spec = os.environ.get(FIX_ENV)
    if spec:
        try:
            import json

            from defib.fixes import build

            watcher.fix = build(json.loads(spec))
        except Exception as exc:  # an unusable fix: the rerun says so and proves nothing
            watcher.record_internal_error("fix", exc)
    install(watcher)
    state: dict[str, Any] = {"stopped": None}
    limit = int(os.environ.get(STEPS_ENV, "0") or 0)
    if limit > 0:
        def stop(step: int) -> None:
            if step >= limit and state["stopped"] is None:
                state["stopped"] = step
                print(f"defib: stopping the script after {step} optimizer steps (--max-steps {limit})",
                      file=sys.stderr, flush=True)
                raise StopTraining(0)
        watcher.on_step(stop)
    if is_main_process():
        watcher.on_evaluate(_checkpoints(live, state))
    _on_stop_signals(live, state)
    atexit.register(_write_report, live, state)


def _checkpoints(live: LiveDiagnosis, state: dict[str, Any]) -> Callable[[int], None]:
    """Rewrite the report at evaluation points, so that a process killed without warning still has one.

    The first evaluation point writes one; then at most one every
    ``CHECKPOINT_SECONDS``, and never more than ``CHECKPOINT_SHARE`` of the time.
    """
    due = {"at": 0.0}

    def checkpoint(_step: int) -> None:
        began = time.monotonic()
        if began < due["at"]:
            return
        _write_report(live, state, partial=True)
        cost = time.monotonic() - began
        due["at"] = time.monotonic() + max(CHECKPOINT_SECONDS, cost / CHECKPOINT_SHARE)

    return checkpoint


def _on_stop_signals(live: LiveDiagnosis, state: dict[str, Any]) -> None:
    """Handle SIGTERM and SIGINT where the script left Python's defaults, and change nothing else about them.

    SIGTERM: write the report, then die of the signal as the script would
    have. SIGINT: KeyboardInterrupt as always, but a second one within
    ``REPEAT_SECONDS`` is dropped: Ctrl-C in a terminal reaches the script and
    ``defib run`` alike, and defib passes it on, so the script gets it twice.
    A process forked from this one (a DataLoader worker) keeps the defaults.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # handlers can only be set from the main thread
    owner = os.getpid()
    last_interrupt: dict[str, float | None] = {"at": None}

    def terminate(signum: int, _frame: Any) -> None:
        if os.getpid() == owner and not state.get("terminating"):
            state["terminating"] = True
            _write_report(live, state)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def interrupt(signum: int, frame: Any) -> None:
        now, last = time.monotonic(), last_interrupt["at"]
        if os.getpid() == owner and last is not None and now - last < REPEAT_SECONDS:
            return
        last_interrupt["at"] = now
        signal.default_int_handler(signum, frame)

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminate)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupt)


def _write_report(live: LiveDiagnosis, state: dict[str, Any], partial: bool = False) -> None:
    """Write this process' report; ``partial``: a checkpoint during training, replaced by the next or the final one."""
    try:
        from defib.report import json as json_report

        watcher = live.watcher
        crashed_in_embedding = watcher.s.data is not None and watcher.s.data.raised_ids is not None
        if watcher.s.step == 0 and watcher.s.loss is None and not watcher.roots() and not crashed_in_embedding:
            return  # a helper process that never touched a model: nothing to say
        # the label control takes seconds: at the run's normal end only, never at a checkpoint or a SIGTERM
        report = run_report(final_diagnosis(live, control=not partial and not state.get("terminating")), watcher)
        report["partial"] = partial
        report["stopped_after_steps"] = state["stopped"]
        report["pid"] = os.getpid()
        report["rank"] = int(os.environ.get("RANK", "0") or 0)
        out = os.path.join(os.environ[REPORT_ENV], f"report.{os.getpid()}.json")
        json_report.write(report, out)
    except Exception as exc:
        print(f"defib: could not write the report ({type(exc).__name__}: {exc})", file=sys.stderr)


def run_report(diagnosis: Diagnosis, watcher: Watcher) -> dict[str, Any]:
    """A watched run's report dict, the same from every entry point: the diagnosis, what was seen, the series."""
    report = diagnosis.to_dict()
    report.update(run_extra(watcher))
    return report


def run_extra(watcher: Watcher) -> dict[str, Any]:
    """What a watched run's report adds to its diagnosis: what was seen, the ranks, the series for the plots."""
    return {"observed": observed(watcher),
            "ranks": watcher.s.config.get("ranks", 1),  # > 1: statistics were reduced across torchrun ranks
            "signals": export_signals(watcher.s)}


def observed(watcher: Watcher) -> dict[str, Any]:
    """What defib saw, for an inconclusive verdict to explain itself."""
    s = watcher.s
    seen = {"models": len(watcher.roots()), "optimizer_steps": s.step,
            "loss_calls": s.loss.calls if s.loss else 0,
            "backward_calls": s.optim.backward_calls if s.optim else 0}
    if s.loss is None and s.optim is not None and s.optim.unread_loss:
        # a hand-written loss defib could not read as predictions against targets: say what it was made of
        seen["unread_loss"] = " ".join(s.optim.unread_loss)
    if "trackers" in s.config:  # the experiment trackers defib wrote its series into (integrations/trackers)
        seen["trackers"] = list(s.config["trackers"])
    return seen


def export_signals(s: Any) -> dict[str, Any]:
    """The recorded series, for the HTML report's plots.

    Bounded whatever the run's length: each series keeps at most 513 points
    (``Series`` caps), the per-group dicts have one entry per module group,
    the class shares at most ``MAX_PLOTTED_CLASSES`` + 1 (defib.signals), and
    the final histograms ``HIST_BINS`` bins or ``MAX_PLOTTED_CLASSES`` * 5 classes.
    """
    out: dict[str, Any] = {}
    if s.preds is not None:
        p = s.preds
        out["spread"] = p.spread.to_dict()
        out["loss"] = p.loss_window.to_dict()
        out["baseline"] = p.baseline.to_dict()
        out["pred_quantiles"] = {k: v.to_dict() for k, v in p.pred_quantiles.items()}
        out["target_quantiles"] = {k: v.to_dict() for k, v in p.target_quantiles.items()}
        out["class_share"] = {k: v.to_dict() for k, v in p.class_share.items()}
        out["final"] = _final_distributions(p)
    if s.loss is not None:
        out["step_loss"] = s.loss.values.to_dict()
    if s.optim is not None:
        out["lr"] = s.optim.lr.to_dict()
        # in model order (embeddings, layers, pooler, head): the rows of the report's heat map
        out["grad_norm"] = {k: s.optim.grad_norm[k].to_dict() for k in sorted(s.optim.grad_norm, key=P.group_order)}
        out["update_ratio"] = {k: s.optim.update_ratio[k].to_dict()
                               for k in sorted(s.optim.update_ratio, key=P.group_order)}
    return out


HIST_BINS = 30  # bins of the final prediction / target histograms


def _final_distributions(p: Any) -> dict[str, Any]:
    """The recent predictions against the targets: a shared-bin histogram (regression) or class counts."""
    import numpy as np

    from defib.signals.run import MAX_PLOTTED_CLASSES

    if p.task == "classification":
        top = sorted(p.label_counts, key=lambda c: -p.label_counts[c])[:MAX_PLOTTED_CLASSES * 4]
        keep = sorted(set(top) | set(sorted(p.pred_counts, key=lambda c: -p.pred_counts[c])[:MAX_PLOTTED_CLASSES]))
        return {"kind": "classification", "classes": [str(c) for c in keep],
                "pred_counts": [int(p.pred_counts.get(c, 0)) for c in keep],
                "label_counts": [int(p.label_counts.get(c, 0)) for c in keep]}
    preds, targets = np.asarray(p.recent_preds, dtype=float), np.asarray(p.recent_targets, dtype=float)
    preds, targets = preds[np.isfinite(preds)], targets[np.isfinite(targets)]
    both = np.concatenate([preds, targets])
    if both.size == 0:
        return {}
    lo, hi = float(both.min()), float(both.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, HIST_BINS + 1)
    return {"kind": "regression", "bin_edges": edges.tolist(),
            "pred_counts": np.histogram(preds, edges)[0].tolist(),
            "target_counts": np.histogram(targets, edges)[0].tolist()}
