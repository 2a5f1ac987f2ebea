"""Report dicts for the HTML tests: a data check and a finding list built by hand, a 100k-step run built synthetically.

The check dict has exactly the shape ``defib check`` writes (see
``defib.report.html``); the payloads stand for what a user's data or script
can put into a report: labels, column names, messages, paths, code lines.
"""

from __future__ import annotations

from typing import Any

SCRIPT_PAYLOAD = "<script>window.pwned=1</script>"
IMG_PAYLOAD = "<img src=x onerror=window.pwned=2>"
PAYLOADS = (SCRIPT_PAYLOAD, IMG_PAYLOAD)


def finding(code: str = "D001", message: str = "22% of rows are cut at max_length 32.", **extra: Any) -> dict:
    out = {"code": code, "cause": "data.truncation", "severity": "warning", "confidence": 0.8, "step": None,
           "title": "Truncation makes distinct texts identical", "message": message,
           "evidence": {"rows_at_max_length": 220, "rows": 1000, "example_lengths": list(range(40))},
           "where": None, "fix": "tokenizer(texts, truncation=True, max_length=256)", "symptoms": []}
    out.update(extra)
    return out


def check_report(labels: dict[str, Any] | None = None, findings: list[dict] | None = None) -> dict:
    """A ``defib check`` report: token-length histogram, max_length, label distribution."""
    if labels is None:
        labels = {"kind": "classification", "counts": {"fresh": 7403, "rotten": 5405, "plot": 1097}}
    return {
        "defib_version": "0.1.0", "verdict": "at_risk", "task": "classification", "steps_observed": 0,
        "flatline": None, "findings": [finding()] if findings is None else findings, "confirmed_fixes": [],
        "check": {"rows": 13905, "task": "classification", "task_inferred": True, "max_length": 32,
                  "token_lengths": {"bin_edges": [0, 8, 16, 24, 32, 40, 48, 56, 64],
                                    "counts": [1200, 5200, 4100, 1900, 900, 400, 150, 55]},
                  "labels": labels},
    }


def payload_report() -> dict:
    """A check report with the payloads in every place user text can reach."""
    labels = {"kind": "classification", "counts": {SCRIPT_PAYLOAD: 500, IMG_PAYLOAD: 300, "fresh": 200}}
    f = finding(message=f"column {SCRIPT_PAYLOAD} has 3 empty rows, e.g. {IMG_PAYLOAD}",
                evidence={IMG_PAYLOAD: SCRIPT_PAYLOAD, "examples": [SCRIPT_PAYLOAD, IMG_PAYLOAD]},
                where={"file": f"data/{IMG_PAYLOAD}.csv", "line": 3, "code": SCRIPT_PAYLOAD},
                fix=f"df = df[df[{SCRIPT_PAYLOAD!r}].notna()]", cause=None, code=IMG_PAYLOAD)
    report = check_report(labels=labels, findings=[f])
    report["task"] = SCRIPT_PAYLOAD
    report["command"] = ["defib", "check", f"{IMG_PAYLOAD}.csv", "--text", SCRIPT_PAYLOAD]
    report["confirmed_fixes"] = [{"cause": SCRIPT_PAYLOAD, "fix": IMG_PAYLOAD, "recovered": False,
                                  "before": {SCRIPT_PAYLOAD: 1.0}, "after": {"pred_std": IMG_PAYLOAD}}]
    return report


GROUPS = ["embeddings"] + [f"layer.{i}" for i in range(12)] + ["pooler", "head"]  # a BERT-base's module groups


def long_run_signals(steps: int = 100_000, sample_every: int = 10) -> Any:
    """Signals of a BERT-base run of ``steps`` optimizer steps, filled as the watcher fills them (same cadence)."""
    import math

    from defib.signals.common import Series
    from defib.signals.run import LossSignals, OptimSignals, PredSignals, Signals

    s = Signals(step=steps, task="regression")
    s.loss = LossSignals(fn="mse_loss", family="regression")
    p = s.preds = PredSignals(task="regression")
    o = s.optim = OptimSignals()
    for step in range(1, steps + 1):
        decay = math.exp(-step / steps)
        s.loss.values.add(step, 1.0 + decay + 0.1 * math.sin(step))
        o.lr.add(step, 5e-5 * decay)
        p.spread.add(step, 0.5 * decay)
        p.loss_window.add(step, 1.0 + decay)
        p.baseline.add(step, 2.0)
        if step < 3 or step % sample_every == 0:
            for q, v in (("p10", -decay), ("p50", 0.0), ("p90", decay)):
                p.pred_quantiles.setdefault(q, Series()).add(step, v)
                p.target_quantiles.setdefault(q, Series()).add(step, 2 * v / decay)
            for i, g in enumerate(GROUPS):
                o.grad_norm.setdefault(g, Series()).add(step, (i + 1) * decay)
                o.update_ratio.setdefault(g, Series()).add(step, 1e-4 * (i + 1) * decay)
    p.recent_preds = [0.01 * i for i in range(256)]
    p.recent_targets = [0.02 * i for i in range(256)]
    return s


def classification_run(steps: int = 40, lr: float = 0.05) -> Any:
    """A tiny 3-class classifier trained for real under ``defib.watch``; returns the watch (diagnosis, signals)."""
    import torch
    from torch import nn

    import defib

    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(16, 8), nn.Flatten(), nn.Linear(8 * 4, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    x = torch.randint(0, 16, (64, 4))
    y = x[:, 0] % 3  # learnable from the first token
    with defib.watch(model, opt, announce=None) as w:
        for step in range(steps):
            rows = slice(step % 4 * 16, step % 4 * 16 + 16)
            loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w
