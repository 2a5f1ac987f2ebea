"""Run the rules, rank the root causes, fold the symptoms, decide the verdict.

Root causes (findings with a ``cause``) come first, worst and most certain
first. Symptoms (flat predictions, a loss stuck at the baseline, divergence)
say *that* the run collapsed, not why: they are folded under the top cause,
and stand alone only when no cause explains them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from defib._version import __version__
from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, all_rules, resolve
from defib.rules.fmt import num, rnd
from defib.signals.run import MAX_INTERNAL_ERRORS

FLATLINE_CODE = "S001"
PROBE_FLATLINE_CODE = "S101"  # a probe's outputs constant across inputs
INTERNAL_CODE = "X001"

# What a flatline standing alone says instead of "fix the root cause listed first": the causes a training
# run cannot show, and the commands that can. Labels that do not belong to their texts look, from inside a
# run, like any other failure to learn (flat predictions at the baseline); only a control with permuted
# labels (defib probe) or the data itself (defib check) tells them apart (issue 15, item 5).
UNSEEN_IN_RUN = {
    "data.label_misalignment": "defib probe --model MODEL_DIR --data TRAIN_FILE (compares real labels with "
                               "permuted ones on held-out rows)",
    "data.constant_labels": "defib check TRAIN_FILE",
    "data.truncation": "defib check TRAIN_FILE --model MODEL_DIR",
}
UNEXPLAINED_FIX = (
    "No root cause was visible in this run. A run cannot show labels that do not belong to their texts: run "
    + UNSEEN_IN_RUN["data.label_misalignment"] + ". Check the data before training with "
    + UNSEEN_IN_RUN["data.truncation"] + ".")

LABELS_CHECKED_FIX = (
    "No root cause was visible in this run. The labels do go with their texts: a linear read-out of the "
    "pretrained encoder's features for {rows} of the run's own training rows predicts held-out labels with an "
    "R^2 of {score} against {null} for the same labels shuffled (p = {p}). Check the data before training with "
    + UNSEEN_IN_RUN["data.truncation"] + ".")


def _label_control_note(flat: Finding, control: Any) -> None:
    """What the end-of-run label control (D010's) says about a flatline it could not explain.

    Labels the encoder's features predict are no longer among the causes a run cannot see; a control that
    did not run says why, plainly.
    """
    if control is None:
        return
    got = control.labels
    if control.skipped is not None or got is None:
        flat.evidence["label_control"] = control.skipped or "the label control measured nothing"
        return
    predicted = got.p_value <= thresholds.LABELS_PREDICTED_P
    flat.evidence["label_control"] = {"probe_r2": rnd(got.score), "shuffled_r2_mean": rnd(got.null_mean),
                                      "shuffled_r2_q95": rnd(got.null_q95), "p_value": rnd(got.p_value),
                                      "rows": got.rows, "seconds": control.seconds,
                                      "labels_predicted": predicted,
                                      # the positive control: labels read off the texts (common tokens' presence)
                                      "token_labels_p_value": None if control.power is None
                                      else rnd(control.power.p_value)}
    if predicted:
        flat.evidence["not_visible_in_run"] = sorted(set(UNSEEN_IN_RUN) - {"data.label_misalignment"})
        flat.fix = LABELS_CHECKED_FIX.format(rows=got.rows, score=num(got.score), null=num(got.null_mean),
                                             p=num(got.p_value))


# How a diagnosis shows itself: "html" in a notebook, "text" for print() and IPython's terminal. The report
# layer formats, and sits above this one, so defib/__init__.py plugs its renderers (report dict -> str) in here.
RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {}


@dataclass(repr=False)
class Diagnosis:
    verdict: str
    task: str
    steps: int
    flatline: dict[str, Any] | None
    findings: list[Finding]
    skipped: dict[str, list[str]] = field(default_factory=dict)
    confirmed_fixes: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def causes(self) -> list[Finding]:
        return [f for f in self.findings if f.cause]

    def exit_code(self) -> int:
        """0 healthy, 1 flatlined or an error finding (the CLI's contract)."""
        if self.verdict == "flatlined" or any(f.severity == Severity.ERROR for f in self.findings):
            return 1
        return 0

    def to_dict(self) -> dict[str, Any]:
        out = {
            "defib_version": __version__,
            "verdict": self.verdict,
            "task": self.task,
            "steps_observed": self.steps,
            "flatline": self.flatline,
            "findings": [f.to_dict() for f in self.findings],
            "confirmed_fixes": self.confirmed_fixes,
            "skipped_rules": self.skipped,
        }
        out.update(self.extra)
        return out

    def __repr__(self) -> str:
        codes = ", ".join(f.code for f in self.findings) or "no findings"
        return f"<defib Diagnosis: {self.verdict}, {self.task}, {self.steps} steps; {codes}; print() it for the report>"

    def __str__(self) -> str:
        """The terminal report, as plain text."""
        render = RENDERERS.get("text")
        return render(self.to_dict()) if render else repr(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's terminal shows the report, not the dataclass."""
        printer.text(repr(self) if cycle else str(self))

    def _repr_html_(self) -> str | None:
        """A notebook shows the HTML report's verdict banner, findings and plots under the cell."""
        render = RENDERERS.get("html")
        return render(self.to_dict()) if render else None


def _missing(rule: Rule, signals: Any) -> list[str]:
    return [path for path in rule.needs if resolve(signals, path) is None]


def diagnose(signals: Any, *, first_fired: dict[str, int] | None = None, ignore: tuple[str, ...] = (),
             stage: str = "run") -> Diagnosis:
    """Apply every rule to ``signals`` and build the ranked diagnosis.

    ``first_fired`` maps a rule code to the step at which it first fired; it
    is updated in place so that repeated calls during a run remember when each
    finding appeared. ``ignore`` suppresses rules by code (as a user would with
    ``--ignore L004``) before the verdict, so an ignored finding never decides it.
    ``stage`` picks the rules that read this kind of evidence (see ``Rule.stage``).
    """
    first_fired = {} if first_fired is None else first_fired
    catalogue = all_rules(stage)
    findings: list[Finding] = []
    skipped: dict[str, list[str]] = {}
    step_now = int(getattr(signals, "step", 0) or 0)
    for code, cls in catalogue.items():
        if code in ignore:
            continue
        rule = cls()
        missing = _missing(rule, signals)
        if missing:
            skipped[code] = missing
            continue
        try:
            found = rule.check(signals)
        except Exception as exc:  # a broken rule must not hide the others
            errors = getattr(signals, "internal_errors", None)
            message = f"rule {code}: {type(exc).__name__}: {exc}"
            # the rules run every few steps during training: note each error once, keep the list bounded
            if isinstance(errors, list) and message not in errors and len(errors) < MAX_INTERNAL_ERRORS:
                errors.append(message)
            continue
        if found is None:
            continue
        found.step = first_fired.setdefault(code, step_now)
        findings.append(found)
    errors = list(getattr(signals, "internal_errors", []) or [])
    if errors:
        findings.append(Finding(
            code=INTERNAL_CODE, cause=None, severity=Severity.INFO, confidence=1.0, title="defib internal error",
            message=f"defib hit {len(errors)} internal error(s) and skipped those measurements; training was not affected.",
            evidence={"errors": errors[:10]},
            fix="Please report this with the evidence above; pass --ignore X001 to silence it."))
    return _assemble(signals, findings, skipped, stage)


def _verdict_from_rows(signals: Any, findings: list[Finding]) -> str:
    """A data check, or a prediction run (``defib predict``), has no training steps: its rows are its evidence.

    ``at_risk`` when any finding warns (for a check: the collapse can only
    come later; for predictions: they are not what the model learned),
    ``healthy`` when none does, ``inconclusive`` when there were no rows to look at.
    """
    if not int(getattr(signals, "rows", 0) or 0):
        return "inconclusive"
    if any(f.severity >= Severity.WARNING for f in findings if f.code != INTERNAL_CODE):
        return "at_risk"
    return "healthy"


def _probe_verdict(signals: Any, flat: Finding | None, findings: list[Finding]) -> str:
    """A probe asks the model at rest: flat outputs are a flatline, any warning a risk; no probe ran, no verdict."""
    probe = getattr(signals, "probe", None)
    if flat is not None:
        return "flatlined"
    parts = ("initial", "sensitivity", "grads", "lr_range", "overfit", "permutation")
    if probe is None or all(getattr(probe, p) is None for p in parts):
        return "inconclusive"
    return "at_risk" if any(f.severity >= Severity.WARNING for f in findings) else "healthy"


def _assemble(signals: Any, findings: list[Finding], skipped: dict[str, list[str]],
              stage: str = "run") -> Diagnosis:
    causes = sorted((f for f in findings if f.cause), key=lambda f: (-int(f.severity), -f.confidence, f.code))
    symptoms = sorted((f for f in findings if not f.cause), key=lambda f: (-int(f.severity), f.code))
    if causes and stage != "check":  # a data check's cause-less findings are notes, not symptoms of a cause
        causes[0].symptoms = [f.code for f in symptoms if f.code != INTERNAL_CODE]
    flat_code = PROBE_FLATLINE_CODE if stage == "probe" else FLATLINE_CODE
    flat = next((f for f in symptoms if f.code == flat_code), None)
    steps = int(getattr(signals, "step", 0) or 0)
    observed_preds = getattr(signals, "preds", None) is not None
    if stage in ("check", "predict"):
        verdict = _verdict_from_rows(signals, findings)
    elif stage == "probe":
        verdict = _probe_verdict(signals, flat, findings)
    elif flat is not None:
        verdict = "flatlined"
    elif any(f.severity >= Severity.WARNING for f in causes):
        # a cause seen during training is a risk even when the predictions were not (a loss cut off from
        # the model's outputs hides them), or when no step was taken at all (an optimizer that never steps):
        # "inconclusive" would undersell a run no gradient ever reached
        verdict = "at_risk"
    elif steps == 0:
        verdict = "inconclusive"
    elif not observed_preds:
        verdict = "inconclusive"
    else:
        verdict = "healthy"
    if flat is not None and stage == "run" and not any(f.severity >= Severity.WARNING for f in causes):
        flat.fix = UNEXPLAINED_FIX
        flat.evidence["not_visible_in_run"] = sorted(UNSEEN_IN_RUN)
        _label_control_note(flat, getattr(signals, "label_control", None))
    flatline = None
    if flat is not None:
        e = flat.evidence
        flatline = {"step": flat.step, "pred_std": e.get("pred_std"), "target_std": e.get("target_std"),
                    "loss": e.get("loss"), "baseline_loss": e.get("baseline_loss")}
    return Diagnosis(verdict=verdict, task=getattr(signals, "task", "unknown"), steps=steps,
                     flatline=flatline, findings=causes + symptoms, skipped=skipped)
