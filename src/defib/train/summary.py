"""What ``defib train`` prints: the plan before training, the diagnosis and the final table after."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from defib.train.pipeline import REPORT_FILE, TrainResult

METRIC_ORDER = ("pearson", "spearman", "rmse", "accuracy", "macro_f1", "micro_f1", "exact_match", "entity_f1",
                "entity_precision", "entity_recall", "token_accuracy")
COLLAPSED = 0.1   # predicted non-O words below this share of the true ones: the model tags (almost) everything O


def final_table(result: TrainResult, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    table = Table(title="defib train", title_justify="left")
    table.add_column("dev metric")
    table.add_column("value", justify="right")
    table.add_row("task", result.task)
    table.add_row("loss", result.loss)
    for name in METRIC_ORDER:
        if name in result.metrics:
            table.add_row(name, f"{result.metrics[name]:.4f}")
    if "pred_non_o_share" in result.metrics:
        table.add_row("non-O words (dev truth)", f"{result.metrics['pred_non_o_share']:.1%} "
                                                 f"({result.metrics.get('true_non_o_share', 0.0):.1%})")
    if "spearman_before_training" in result.metrics:  # a bi-encoder: the model as loaded, on the same dev pairs
        table.add_row("spearman before training", f"{result.metrics['spearman_before_training']:.4f}")
    table.add_row("epochs run", f"{result.epochs_run:.2f}")
    table.add_row("wall time", f"{result.wall_s:.1f} s")
    table.add_row("train samples/s", f"{result.samples_per_s:.1f}")
    console.print(table)
    for warning in (missed_classes_warning(result), outside_collapse_warning(result), worse_than_loaded(result)):
        if warning:
            console.print(warning, style="yellow")


def missed_classes_warning(result: TrainResult) -> str | None:
    """A line when dev classes are never predicted, with what to try; None otherwise.

    A short run can leave a rare class unpredicted while the run looks
    healthy: the other classes still vary, so there is no flatline to find
    (bench/train/README.md has the runs where this happened).
    """
    missed = int(result.metrics.get("classes_missed", 0))
    if missed <= 0:
        return None
    try_next = ("more --epochs, or another --seed" if result.loss == "focal"
                else "--loss focal (with class weights), more --epochs, or another --seed")
    return (f"warning: {missed} class{'es' if missed > 1 else ''} of the dev set never predicted (rarest-class F1 "
            f"{result.metrics.get('min_class_f1', 0.0):.2f}); the model ignores {'them' if missed > 1 else 'it'}. "
            f"Try {try_next}.")


def outside_collapse_warning(result: TrainResult) -> str | None:
    """A line when the tagger predicts (nearly) every word O although the dev set has entities; None otherwise.

    Token accuracy hides this collapse (O is most words), and there may be no
    flatline to find: the few words tagged otherwise still vary.
    """
    m = result.metrics
    true, pred = m.get("true_non_o_share", 0.0), m.get("pred_non_o_share")
    if pred is None or true <= 0 or pred >= COLLAPSED * true:
        return None
    try_next = "more --epochs, a higher --lr" + ("" if result.loss == "focal" else ", or --loss focal (with tag weights)")
    return (f"warning: {pred:.1%} of the dev words predicted other than O, against {true:.1%} in the truth (entity F1 "
            f"{m.get('entity_f1', 0.0):.2f}): the tagger calls nearly every word O. Try {try_next}.")


def diagnosis_lines(diagnosis: Any) -> list[str]:
    """The watched run in a few lines: verdict and the findings that are not notes."""
    if diagnosis is None:
        return ["defib: no diagnosis (the watch did not run)"]
    report = diagnosis.to_dict()
    from defib.report.text import headline

    lines = [f"defib: {headline(report)}; full report in {REPORT_FILE}"]
    for f in report["findings"]:
        if f["severity"] != "info":
            lines.append(f"  [{f['code']}] {f['severity']}: {f['message']}")
    return lines


def worse_than_loaded(result: TrainResult) -> str | None:
    """A line when the model as loaded ranked the dev pairs better than the fine-tuned one; None otherwise.

    A sentence-transformers checkpoint is often trained for similarity
    already: one epoch on STS-B at 2e-5 took the packaged MiniLM's dev
    Spearman from 0.867 to 0.852 (bench/train/README.md), a run defib calls
    healthy, since nothing collapsed.
    """
    before, after = result.metrics.get("spearman_before_training"), result.metrics.get("spearman")
    if before is None or after is None or after >= before:
        return None
    return (f"warning: the model as loaded ranked the dev pairs better than the fine-tuned one (Spearman {before:.3f} "
            f"before training, {after:.3f} after): it was trained for similarity already. A lower --lr or fewer "
            f"--epochs may keep what it knew; or use it as it is.")
