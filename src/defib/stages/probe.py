"""The probe stage: ask a model at rest (``defib probe``, ``defib.probe``), diagnose, and keep the measurements.

The probes themselves are :mod:`defib.evidence.probes`; this module runs them,
hands their :class:`~defib.signals.probe.ProbeSignals` to the probe-stage
rules, and puts the measurements the reports plot into the diagnosis.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

from torch import nn

from defib.diagnosis import Diagnosis, diagnose
from defib.evidence.probes import Budget, run_probes
from defib.signals.probe import ProbeSignals
from defib.signals.run import Signals


def probe_diagnosis(model: nn.Module, tokenizer: Any, batch_or_data: Any, *, labels: Any = None,
                    task: str | None = None, optimizer: Any = None, loss_fn: Callable | None = None,
                    budget: Budget | None = None, progress: Callable | None = None, source: str = "caller's data",
                    ignore: tuple[str, ...] = ()) -> Diagnosis:
    """Run the probes, diagnose what they measured, and attach the measurements as ``extra["probe"]``."""
    sig = run_probes(model, tokenizer, batch_or_data, labels=labels, task=task, optimizer=optimizer,
                     loss_fn=loss_fn, budget=budget or Budget(), progress=progress, source=source)
    diagnosis = diagnose(Signals(task=sig.task, probe=sig), stage="probe", ignore=ignore)
    diagnosis.extra["probe"] = probe_section(sig)
    return diagnosis


def probe_section(sig: ProbeSignals) -> dict[str, Any]:
    """The probe measurements for the JSON report (and the HTML report's plots)."""
    out: dict[str, Any] = {"rows": sig.rows, "source": sig.source, "user_lr": sig.user_lr,
                           "seconds": sig.seconds, "errors": sig.errors}
    r = sig.lr_range
    out["lr_range"] = None if r is None else {"lrs": r.lrs, "losses": r.losses, "suggested_lr": r.suggested_lr,
                                              "min_loss_lr": r.min_loss_lr, "diverged_lr": r.diverged_lr,
                                              "optimizer": r.optimizer}
    g = sig.grads
    out["grad_norms"] = None if g is None else g.norms
    out["gradient_flow"] = None if g is None else {k: v for k, v in asdict(g).items() if k != "norms"}
    for name in ("initial", "sensitivity", "overfit", "permutation"):
        part = getattr(sig, name)
        out[name] = None if part is None else asdict(part)
    return out
