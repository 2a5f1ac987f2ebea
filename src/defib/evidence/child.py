"""The watched side of ``defib run``: attach when torch is imported, report at exit.

``defib run`` starts the user's command with ``defib/_boot`` on PYTHONPATH and
``DEFIB_REPORT_DIR`` set. Each Python process that imports torch writes one
report, ``report.<pid>.json``, when it exits (normally, by an exception, or
stopped by ``--steps``); the parent picks the process that trained.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any

from defib.evidence.hooks import _PostImport

STEPS_ENV = "DEFIB_STEPS"
REPORT_ENV = "DEFIB_REPORT_DIR"


class StopTraining(SystemExit):
    """Raised from the optimizer's post-step hook when ``--steps`` is reached."""


def start() -> None:
    finder = _PostImport({"torch": _attach_after_torch})
    finder.install()


def _attach_after_torch(_torch_module: Any) -> None:
    # torch finished importing; its submodules are importable now
    from defib.evidence.hooks import install
    from defib.evidence.watch import Watcher, stderr_announce

    watcher = Watcher(announce=stderr_announce)
    install(watcher)
    state: dict[str, Any] = {"stopped": None}
    limit = int(os.environ.get(STEPS_ENV, "0") or 0)
    if limit > 0:
        def stop(step: int) -> None:
            if step >= limit and state["stopped"] is None:
                state["stopped"] = step
                print(f"defib: stopping the script after {step} optimizer steps (--steps {limit})",
                      file=sys.stderr, flush=True)
                raise StopTraining(0)
        watcher.on_step(stop)
    atexit.register(_write_report, watcher, state)


def _write_report(watcher: Any, state: dict[str, Any]) -> None:
    try:
        from defib.report import json as json_report

        if watcher.s.step == 0 and watcher.s.loss is None and not watcher.roots():
            return  # a helper process that never touched a model: nothing to say
        report = watcher.diagnose().to_dict()
        report["stopped_after_steps"] = state["stopped"]
        report["observed"] = observed(watcher)
        report["pid"] = os.getpid()
        report["rank"] = int(os.environ.get("RANK", "0") or 0)
        report["ranks"] = watcher.s.config.get("ranks", 1)  # > 1: statistics were reduced across torchrun ranks
        report["signals"] = export_signals(watcher.s)
        out = os.path.join(os.environ[REPORT_ENV], f"report.{os.getpid()}.json")
        json_report.write(report, out)
    except Exception as exc:
        print(f"defib: could not write the report ({type(exc).__name__}: {exc})", file=sys.stderr)


def observed(watcher: Any) -> dict[str, Any]:
    """What defib saw, for an inconclusive verdict to explain itself."""
    s = watcher.s
    return {"models": len(watcher.roots()), "optimizer_steps": s.step,
            "loss_calls": s.loss.calls if s.loss else 0,
            "backward_calls": s.optim.backward_calls if s.optim else 0}


def export_signals(s: Any) -> dict[str, Any]:
    """The recorded series, for plots (bounded: each series keeps at most 512 points)."""
    out: dict[str, Any] = {}
    if s.preds is not None:
        out["spread"] = s.preds.spread.to_dict()
        out["loss"] = s.preds.loss_window.to_dict()
        out["baseline"] = s.preds.baseline.to_dict()
    if s.optim is not None:
        out["lr"] = s.optim.lr.to_dict()
        out["grad_norm"] = {k: v.to_dict() for k, v in s.optim.grad_norm.items()}
        out["update_ratio"] = {k: v.to_dict() for k, v in s.optim.update_ratio.items()}
    return out
