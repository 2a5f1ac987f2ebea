"""D105: labels encoded in a way the head and the loss cannot use as they stand."""

from __future__ import annotations

from defib.signals.check import CheckSignals, LabelSignals, ModelConfigSignals
from defib.rules import thresholds
from defib.rules.base import Finding, Rule, Severity, register



@register
class LabelEncodingInData(Rule):
    """Class labels that do not fit ``0..K-1`` integer ids, or a multi-hot column that is not 0/1.

    What it detects:
        For classification: fractional values where class ids are expected;
        negative ids (other than the ignore index -100); ids at or above the
        model config's ``num_labels`` (when its ``id2label`` names them);
        1-based ids (``1..K``, no 0); ids with gaps (``{0, 1, 5}``); whole
        numbers stored or written as floats (``1.0``), which transformers
        reads as a multi-label problem; and numbers spelled two ways
        (``"1"`` and ``"1.0"``) that a ``label2id`` built on the strings makes
        two classes. For multi-hot lists: values other than 0 and 1.

    Why it flattens predictions:
        Out-of-range ids crash the loss or read garbage; 1-based or gappy ids
        leave logits that are never a target and shift the rest, so the head
        learns the prior. Float class ids make ``AutoModelForSequenceClassification``
        pick ``problem_type="multi_label_classification"`` (BCE on one column
        of targets): the model learns almost nothing and predicts the base rate.

    Example:
        ``labels = df["stars"]  # 1..5`` with ``num_labels=5``, or
        ``df["label"].astype(float)``.

    Fix:
        Map labels to ``0..K-1`` int64 ids with one ``label2id``
        (``{v: i for i, v in enumerate(sorted(set(labels)))}``), and build the
        head with ``num_labels=K``.
    """

    code = "D105"
    cause = "data.label_encoding"
    title = "Labels encoded wrongly for the head and loss"
    severity = Severity.ERROR
    needs = ("labels",)
    stage = "check"

    def check(self, s: CheckSignals) -> Finding | None:
        lab = s.labels
        if s.task == "classification" and lab.kind == "number":
            problems = _class_ids(lab, s.model)
        elif s.task == "multilabel" and lab.multihot_width and set(lab.multihot_values) - {0, 1}:
            odd = sorted(set(lab.multihot_values) - {0, 1})[:5]
            problems = [(Severity.ERROR, f"multi-hot label vectors hold {odd}, not only 0 and 1",
                         "targets = (targets > 0).float()  # BCE needs 0/1 per label")]
        else:
            problems = []
        if not problems:
            return None
        worst = max(p[0] for p in problems)
        sev, msg, fix = next(p for p in problems if p[0] == worst)
        more = f" (and {len(problems) - 1} more problem(s) in the evidence)" if len(problems) > 1 else ""
        return self.finding(f"{msg[0].upper()}{msg[1:]}{more}.", confidence=0.9 if sev == Severity.ERROR else 0.7,
                            severity=sev, fix=fix,
                            evidence={"problems": [p[1] for p in problems], "label_kind": lab.kind,
                                      "label_values": [str(k) for k in list(lab.counts or {})[:20]],
                                      "num_labels": s.model.num_labels if s.model else None})


def _class_ids(lab: LabelSignals, model: ModelConfigSignals | None) -> list[tuple[Severity, str, str]]:
    out: list[tuple[Severity, str, str]] = []
    if not lab.integral:
        frac = [v for v in (lab.counts or {}) if float(v) != int(v)][:3] or [lab.min, lab.max]
        return [(Severity.ERROR, f"class labels include fractional values such as {frac}",
                 "Use --task regression for scores, or map the classes to ids 0..K-1")]
    if lab.counts is None:
        return [(Severity.ERROR, f"class labels take too many distinct values to be class ids "
                 f"(range {lab.min:g}..{lab.max:g})", "Use --task regression for scores, or map the classes to ids")]
    ids = sorted(int(v) for v in lab.counts if int(v) != thresholds.IGNORE_INDEX)
    if not ids:
        return out
    lo, hi, k = ids[0], ids[-1], len(ids)
    if lo < 0:
        out.append((Severity.ERROR, f"class ids include {lo}; ids must be 0..K-1 (only -100 is ignored)",
                    f"labels = labels - ({lo})  # or a label2id map"))
    if model and model.num_labels and hi >= model.num_labels:
        out.append((Severity.ERROR, f"class ids go up to {hi} but the model's config has num_labels="
                    f"{model.num_labels} (ids 0..{model.num_labels - 1})",
                    f"from_pretrained(path, num_labels={hi + 1})  # or remap the ids"))
    if lo == 1 and ids == list(range(1, hi + 1)) and k >= 2:
        out.append((Severity.WARNING, f"class ids run 1..{hi} and never 0: they look 1-based",
                    f"labels = labels - 1; num_labels={k}"))
    elif lo >= 0 and ids != list(range(0, hi + 1)):
        gaps = sorted(set(range(lo, hi + 1)) - set(ids))[:5]
        out.append((Severity.WARNING, f"class ids {ids[:8]} skip {gaps}: a head of {hi + 1} logits would keep "
                    "logits that are never a target", "label2id = {v: i for i, v in enumerate(sorted(set(labels)))}"))
    if lab.float_written:
        out.append((Severity.WARNING, "class ids are stored or written as floats (1.0); transformers reads float "
                    "labels with num_labels > 1 as a multi-label problem (BCE)",
                    "labels = labels.astype('int64')  # torch.long targets for cross-entropy"))
    if lab.spellings:
        value, spelled = next(iter(lab.spellings.items()))
        out.append((Severity.WARNING, f"the label {value} is written {len(spelled)} ways ({', '.join(map(repr, spelled[:3]))});"
                    " a label2id built on the strings makes them different classes",
                    "labels = [int(float(v)) for v in raw_labels]  # parse before building label2id"))
    return out
