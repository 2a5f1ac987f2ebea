"""The HTML report's plots, drawn with matplotlib from the report dict, returned as inline SVG.

Each builder takes the report's recorded series (``report["signals"]`` for a
watched run, ``report["check"]`` for a data check) and returns a matplotlib
``Figure``, or None when the series it needs were not recorded (a plot that
cannot be drawn is left out, never drawn empty). Figures are built with the
object API (no pyplot, no global state) and rendered to SVG with text kept
as text: crisp at any zoom, a few kilobytes per line plot. The heat map is
rasterised inside its SVG, so its size does not grow with the steps shown.
matplotlib is imported here only, when a report is drawn.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Callable

from defib.rules.thresholds import FLAT_SPREAD, LR_TOO_HIGH_UPDATE, LR_TOO_LOW_UPDATE
from defib.signals.run import TOKEN_TASK

STYLE = {
    "svg.fonttype": "none",      # text stays text: smaller, selectable; the browser's sans-serif draws it
    "svg.hashsalt": "defib",     # stable ids: the same report renders to the same bytes
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "savefig.bbox": "tight",
}
WIDTH, HEIGHT = 8.0, 3.4   # inches: one plot per row of the report
PRED_COLOUR, TARGET_COLOUR, BASELINE_COLOUR = "#d62728", "#1f77b4", "#444444"
MAX_BARS = 30               # classes or labels drawn as bars; the rest are summed as "others"
MAX_LABEL_CHARS = 18        # tick labels longer than this are cut (the full text is in the table)
LOG_SPAN = 100.0            # a positive series spanning more than this factor is drawn on a log axis


@dataclass
class Plot:
    """One drawn figure: an id for the page, a title, a sentence on how to read it, the SVG (or the error)."""

    id: str
    title: str
    caption: str
    svg: str | None = None
    error: str | None = None


# ------------------------------------------------------------------ helpers
def _xy(series: dict[str, list] | None) -> tuple[list[float], list[float]]:
    """Steps and values of an exported Series; missing values become NaN (a gap in the line)."""
    if not series:
        return [], []
    return list(series.get("step") or []), [math.nan if v is None else float(v) for v in series.get("value") or []]


def _figure(rows: int = 1, height: float = HEIGHT, sharex: bool = True):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height * rows))
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def _maybe_log(ax: Any, values: list[float], axis: str = "y") -> None:
    """Log scale when every value is positive and they span more than LOG_SPAN."""
    pos = [v for v in values if math.isfinite(v)]
    if pos and min(pos) > 0 and max(pos) / min(pos) > LOG_SPAN:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _mark_flatline(ax: Any, step: int | None) -> None:
    if step is not None:
        ax.axvline(step, color=PRED_COLOUR, linestyle=":", linewidth=1.2, label=f"flatlined (step {step})")


def _short(text: str) -> str:
    """A user's label for a tick: cut to MAX_LABEL_CHARS, "$" escaped (matplotlib would read "$5 off$" as math)."""
    text = text if len(text) <= MAX_LABEL_CHARS else text[:MAX_LABEL_CHARS - 1] + "…"
    return text.replace("$", r"\$")


def to_svg(fig: Any) -> str:
    """The figure as an ``<svg>`` element (the XML prologue and doctype dropped, for inlining)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="svg", metadata={"Date": None})  # no timestamp: a report renders to the same bytes
    text = buf.getvalue()
    return text[text.index("<svg"):]


# ------------------------------------------------------------------ a watched run
def predictions_over_time(sig: dict[str, Any], task: str, flat_step: int | None):
    """Regression: p10-p90 bands and medians of recent predictions and targets. Classification: class shares."""
    if task == "classification":
        return _class_shares(sig.get("class_share") or {}, flat_step)
    preds, targets = sig.get("pred_quantiles") or {}, sig.get("target_quantiles") or {}
    if "p50" not in preds:
        return None
    fig, (ax,) = _figure()
    for q, colour, name in ((targets, TARGET_COLOUR, "targets"), (preds, PRED_COLOUR, "predictions")):
        if "p50" not in q:
            continue
        x, mid = _xy(q["p50"])
        _, lo = _xy(q.get("p10"))
        _, hi = _xy(q.get("p90"))
        if len(lo) == len(x) == len(hi):
            ax.fill_between(x, lo, hi, color=colour, alpha=0.2, linewidth=0, label=f"{name}, 10th-90th percentile")
        ax.plot(x, mid, color=colour, linewidth=1.6, label=f"{name}, median")
    _mark_flatline(ax, flat_step)
    ax.set(title="Predictions against targets over training (recent window at each sampled step)",
           xlabel="optimizer step", ylabel="value (target units)")
    ax.legend(fontsize=8, loc="best")
    return fig


def _class_shares(shares: dict[str, Any], flat_step: int | None):
    if not shares:
        return None
    import numpy as np
    from matplotlib import colormaps

    steps = sorted({s for series in shares.values() for s in series.get("step") or []})
    if not steps:
        return None
    index = {s: i for i, s in enumerate(steps)}
    names = sorted(shares, key=lambda n: (n == "other", int(n) if n.isdigit() else 0, n))
    grid = np.zeros((len(names), len(steps)))
    for row, name in enumerate(names):
        for s, v in zip(*_xy(shares[name])):
            grid[row, index[s]] = 0.0 if math.isnan(v) else v
    fig, (ax,) = _figure()
    cmap = colormaps["tab20"]
    ax.stackplot(steps, grid, labels=[f"class {_short(n)}" if n != "other" else "other classes" for n in names],
                 colors=[cmap(i % 20) for i in range(len(names))], alpha=0.85)
    _mark_flatline(ax, flat_step)
    ax.set(title="Predicted classes over training (share of recent predictions)", xlabel="optimizer step",
           ylabel="share of predictions", ylim=(0, 1))
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def final_distribution(sig: dict[str, Any]):
    """Histogram of the last recent predictions against the targets (or predicted class against label counts)."""
    final = sig.get("final") or {}
    if final.get("kind") == "classification" and final.get("classes"):
        fig, (ax,) = _figure()
        classes = [str(c) for c in final["classes"]][:MAX_BARS]
        preds = _shares(final.get("pred_counts") or [])[:MAX_BARS]
        labels = _shares(final.get("label_counts") or [])[:MAX_BARS]
        x = list(range(len(classes)))
        ax.bar([i - 0.2 for i in x], labels, width=0.4, color=TARGET_COLOUR, label="labels (all seen)")
        ax.bar([i + 0.2 for i in x], preds, width=0.4, color=PRED_COLOUR, label="predicted class (recent)")
        ax.set_xticks(x, [_short(c) for c in classes], rotation=45 if len(classes) > 8 else 0, ha="right"
                      if len(classes) > 8 else "center")
        ax.set(title="Predicted class against label, end of the run", xlabel="class", ylabel="share of rows")
        ax.legend(fontsize=8)
        return fig
    if final.get("kind") == "regression" and final.get("bin_edges"):
        fig, (ax,) = _figure()
        edges = final["bin_edges"]
        ax.stairs(final.get("target_counts") or [0] * (len(edges) - 1), edges, color=TARGET_COLOUR, fill=True,
                  alpha=0.35, label="targets (recent)")
        ax.stairs(final.get("pred_counts") or [0] * (len(edges) - 1), edges, color=PRED_COLOUR, linewidth=2,
                  label="predictions (recent)")
        ax.set(title="Recent predictions against targets, end of the run", xlabel="value (target units)",
               ylabel="count")
        ax.legend(fontsize=8)
        return fig
    return None


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def loss_with_baseline(sig: dict[str, Any], flat_step: int | None):
    """The training loss per step and its running mean, with the best constant predictor's loss as a line."""
    raw_x, raw = _xy(sig.get("step_loss"))
    mean_x, mean = _xy(sig.get("loss"))
    base_x, base = _xy(sig.get("baseline"))
    if not raw and not mean:
        return None
    fig, (ax,) = _figure()
    if raw:
        ax.plot(raw_x, raw, color="#7f7f7f", linewidth=0.7, alpha=0.6, label="loss per step")
    if mean:
        ax.plot(mean_x, mean, color="black", linewidth=1.6, label="loss, running mean (32 steps)")
    if base:
        ax.plot(base_x, base, color=BASELINE_COLOUR, linestyle="--", linewidth=1.4,
                label="constant-predictor loss (baseline)")
    _mark_flatline(ax, flat_step)
    _maybe_log(ax, raw + mean + base)
    ax.set(title="Training loss against the best constant predictor", xlabel="optimizer step",
           ylabel="loss (as returned by the loss function)")
    ax.legend(fontsize=8)
    return fig


def prediction_spread(sig: dict[str, Any], task: str, flat_step: int | None):
    """Spread of the predictions relative to the targets', with the line below which defib calls it flat."""
    x, y = _xy(sig.get("spread"))
    if not x:
        return None
    fig, (ax,) = _figure(height=2.8)
    ax.plot(x, y, color=PRED_COLOUR, linewidth=1.4, label="prediction spread / target spread")
    ax.axhline(FLAT_SPREAD, color=BASELINE_COLOUR, linestyle="--", linewidth=1, label=f"flat below {FLAT_SPREAD}")
    _mark_flatline(ax, flat_step)
    what = ("entropy of predicted classes / entropy of labels" if task == "classification"
            else "within-batch prediction std / target std")
    ax.set(title="How much the predictions vary", xlabel="optimizer step", ylabel=f"ratio\n({what})")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return fig


def grad_norm_heatmap(sig: dict[str, Any]):
    """Gradient L2 norm per module group (rows, input side at the bottom) over steps, on a log colour scale."""
    groups = sig.get("grad_norm") or {}
    steps = sorted({s for series in groups.values() for s in series.get("step") or []})
    if not steps:
        return None
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    names = list(groups)  # exported in model order: embeddings, layers, pooler, head
    index = {s: i for i, s in enumerate(steps)}
    grid = np.full((len(names), len(steps)), np.nan)
    for row, name in enumerate(names):
        for s, v in zip(*_xy(groups[name])):
            grid[row, index[s]] = v
    positive = grid[np.isfinite(grid) & (grid > 0)]
    masked = np.ma.masked_where(~(np.isfinite(grid) & (grid > 0)), grid)
    # cell edges halfway between sampled steps, so uneven sampling is drawn to scale
    mids = [(a + b) / 2 for a, b in zip(steps, steps[1:])]
    first = steps[0] - (mids[0] - steps[0] if mids else 0.5)
    last = steps[-1] + (steps[-1] - mids[-1] if mids else 0.5)
    x_edges = [first] + mids + [last]
    fig, (ax,) = _figure(height=max(2.4, 0.28 * len(names) + 1.2))
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    norm = LogNorm(vmin=float(positive.min()), vmax=float(positive.max())) if positive.size else None
    mesh = ax.pcolormesh(x_edges, np.arange(len(names) + 1), masked, cmap=cmap, norm=norm, rasterized=True)
    ax.set_yticks(np.arange(len(names)) + 0.5, names)
    ax.grid(False)
    ax.set(title="Gradient norm per layer (grey: zero or not measured)", xlabel="optimizer step",
           ylabel="module group")
    if norm is not None:
        fig.colorbar(mesh, ax=ax, label="gradient L2 norm (log scale)")
    return fig


def lr_and_update_ratio(sig: dict[str, Any], flat_step: int | None):
    """Learning rate (top) and the size of each update relative to the weights, per group (bottom), log scales."""
    lr_x, lr = _xy(sig.get("lr"))
    ratios = sig.get("update_ratio") or {}
    if not lr and not ratios:
        return None
    from matplotlib import colormaps

    fig, (top, bottom) = _figure(rows=2, height=2.6)
    if lr:
        top.plot(lr_x, lr, color="black", linewidth=1.5)
        if all(v > 0 for v in lr if math.isfinite(v)) and any(math.isfinite(v) for v in lr):
            top.set_yscale("log")
    top.set(title="Learning rate", ylabel="learning rate\n(largest param group)")
    cmap = colormaps["viridis"]
    for i, (name, series) in enumerate(ratios.items()):
        x, y = _xy(series)
        bottom.plot(x, y, color=cmap(i / max(1, len(ratios) - 1)), linewidth=1.1, label=name)
    if ratios:
        lines = (("O001", LR_TOO_HIGH_UPDATE, "too high above"), ("O002", LR_TOO_LOW_UPDATE, "too low below"))
        for code, limit, word in lines:
            bottom.axhline(limit, color=BASELINE_COLOUR, linestyle="--", linewidth=0.9)
            bottom.annotate(f"{code}: {word}", (0.005, limit), xycoords=("axes fraction", "data"), fontsize=7,
                            va="bottom", color=BASELINE_COLOUR)
        bottom.set_yscale("log")
        bottom.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=1 + len(ratios) // 10)
    _mark_flatline(bottom, flat_step)
    bottom.set(title="Update size relative to the weights, per module group", xlabel="optimizer step",
               ylabel="‖Δw‖ / ‖w‖ per step\n(log scale)")
    return fig


# ------------------------------------------------------------------ a probe
def lr_range_curve(probe: dict[str, Any]):
    """The learning-rate range test: loss after each step of the exponential sweep, with the LRs it names."""
    r = probe.get("lr_range") or {}
    pairs = [(lr, loss) for lr, loss in zip(r.get("lrs") or [], r.get("losses") or [])
             if lr and lr > 0 and loss is not None and math.isfinite(loss)]
    if len(pairs) < 2:
        return None
    fig, (ax,) = _figure()
    ax.plot([lr for lr, _ in pairs], [loss for _, loss in pairs], color="black", linewidth=1.5, marker=".")
    ax.set_xscale("log")
    _maybe_log(ax, [loss for _, loss in pairs])
    marks = (("suggested_lr", "suggested", "#2ca02c", "-"), ("min_loss_lr", "lowest loss", "#1f77b4", ":"),
             ("diverged_lr", "diverged", PRED_COLOUR, "--"))
    for key, word, colour, style in marks:
        if r.get(key):
            ax.axvline(r[key], color=colour, linestyle=style, linewidth=1.2, label=f"{word} {r[key]:.2g}")
    if probe.get("user_lr"):
        ax.axvline(probe["user_lr"], color="#9467bd", linestyle="-.", linewidth=1.2,
                   label=f"your learning rate {probe['user_lr']:.2g}")
    ax.legend(fontsize=8)
    ax.set(title=f"Learning-rate range test ({r.get('optimizer') or 'optimizer'}, weights restored afterwards)",
           xlabel="learning rate (log scale)", ylabel="training loss")
    return fig


def probe_grad_norms(probe: dict[str, Any]):
    """One backward pass: the gradient norm of each module group as bars; groups without a gradient are marked.

    Bars start at zero on a linear axis; a log axis only when the norms span
    more than LOG_SPAN (a bar's length on a log axis says little by itself).
    """
    norms = probe.get("grad_norms") or {}
    if not norms:
        return None
    names = list(norms)
    values = [float(norms[n] or 0.0) for n in names]
    live = [v > 0 and math.isfinite(v) for v in values]
    positive = [v for v, ok in zip(values, live) if ok]
    log = bool(positive) and max(positive) > LOG_SPAN * min(positive)
    floor = min(positive) / 10 if log else 0.0
    fig, (ax,) = _figure(height=max(2.0, 0.25 * len(names) + 1.0))
    ax.barh(range(len(names)), [v if ok else floor for v, ok in zip(values, live)], color="#1f77b4")
    for i, ok in enumerate(live):
        if not ok:
            ax.annotate("no gradient", (0.01, i), xycoords=("axes fraction", "data"), va="center", fontsize=8,
                        color=PRED_COLOUR)
    ax.set_yticks(range(len(names)), [_short(n) for n in names], fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.set_xlim(left=floor)
    ax.set(title="Gradient norm per module group (one backward pass)",
           xlabel="‖gradient‖" + (" (log scale)" if log else ""))
    return fig


# ------------------------------------------------------------------ a data check
def token_lengths(check: dict[str, Any]):
    """Histogram of tokens per row, with the max_length that truncates them."""
    hist = check.get("token_lengths") or {}
    edges, counts = hist.get("bin_edges") or [], hist.get("counts") or []
    if len(edges) != len(counts) + 1 or not counts:
        return None
    fig, (ax,) = _figure()
    ax.stairs(counts, edges, fill=True, color=TARGET_COLOUR, alpha=0.6, label="rows")
    max_length = check.get("max_length")
    if max_length:
        over = sum(c for c, lo in zip(counts, edges) if lo >= max_length)
        ax.axvline(max_length, color=PRED_COLOUR, linestyle="--", linewidth=1.6,
                   label=f"max_length {max_length} ({over} rows in bins at or past it)")
    ax.set(title="Tokens per row, before truncation", xlabel="tokens per row", ylabel="rows")
    _maybe_log(ax, [float(c) for c in counts if c > 0])
    ax.legend(fontsize=8)
    return fig


def label_distribution(check: dict[str, Any]):
    """Label counts (classification) or a histogram of the targets with their mean and std (regression)."""
    labels = check.get("labels") or {}
    if labels.get("kind") in ("classification", TOKEN_TASK) and labels.get("counts"):
        items = sorted(labels["counts"].items(), key=lambda kv: -kv[1])
        if len(items) > MAX_BARS:
            items = items[:MAX_BARS - 1] + [(f"{len(items) - MAX_BARS + 1} others", sum(n for _, n in items[MAX_BARS - 1:]))]
        fig, (ax,) = _figure()
        names = [_short(str(k)) for k, _ in items]
        ax.bar(range(len(items)), [n for _, n in items], color=TARGET_COLOUR)
        ax.set_xticks(range(len(items)), names, rotation=45 if len(items) > 6 else 0,
                      ha="right" if len(items) > 6 else "center")
        ax.set(title="Label distribution", xlabel="tag" if labels["kind"] == TOKEN_TASK else "label",
               ylabel="tokens" if labels["kind"] == TOKEN_TASK else "rows")
        return fig
    if labels.get("kind") == "regression" and labels.get("bin_edges"):
        edges, counts = labels["bin_edges"], labels.get("counts") or []
        if len(edges) != len(counts) + 1:
            return None
        fig, (ax,) = _figure()
        ax.stairs(counts, edges, fill=True, color=TARGET_COLOUR, alpha=0.6, label="rows")
        mean, std = labels.get("mean"), labels.get("std")
        if mean is not None:
            ax.axvline(mean, color="black", linewidth=1.4, label=f"mean {mean:.3g}")
            if std:
                for side in (mean - std, mean + std):
                    ax.axvline(side, color="black", linestyle=":", linewidth=1)
                ax.plot([], [], color="black", linestyle=":", label=f"mean ± std ({std:.3g})")
        ax.set(title="Target distribution", xlabel="target value", ylabel="rows")
        ax.legend(fontsize=8)
        return fig
    return None


# ------------------------------------------------------------------ assembly
@dataclass(frozen=True)
class Spec:
    """A plot the report may hold: its id, title, how to read it, and its builder (report dict -> Figure | None)."""

    id: str
    title: str
    caption: str
    build: Callable[[dict[str, Any]], Any]


def _sig(r: dict[str, Any]) -> dict[str, Any]:
    return r.get("signals") or {}


def _flat(r: dict[str, Any]) -> int | None:
    return (r.get("flatline") or {}).get("step")


RUN_PLOTS = (
    Spec("predictions", "Predictions against targets",
         "A flatline: the red band narrows to a line while the blue one stays wide (regression), or one class "
         "fills the whole height (classification).",
         lambda r: predictions_over_time(_sig(r), r.get("task") or "unknown", _flat(r))),
    Spec("final-distribution", "Where the predictions ended up",
         "Predictions that pile into one bar (or one class) while the targets spread out are a flatline.",
         lambda r: final_distribution(_sig(r))),
    Spec("loss", "Loss against the constant-predictor baseline",
         "A loss that settles on the dashed line is no better than predicting the same value for every input.",
         lambda r: loss_with_baseline(_sig(r), _flat(r))),
    Spec("spread", "Prediction spread",
         "Below the dashed line the predictions explain almost none of the targets' variance.",
         lambda r: prediction_spread(_sig(r), r.get("task") or "unknown", _flat(r))),
    Spec("grad-norm", "Gradient norm per layer",
         "Grey rows get no gradient (frozen or detached); a sudden dark band is gradients vanishing.",
         lambda r: grad_norm_heatmap(_sig(r))),
    Spec("lr-update", "Learning rate and update size",
         "Dashed lines: the update sizes above which defib calls the learning rate too high (O001: the pretrained "
         "features are overwritten) and below which too low (O002: nothing moves).",
         lambda r: lr_and_update_ratio(_sig(r), _flat(r))),
)

CHECK_PLOTS = (
    Spec("token-lengths", "Token lengths",
         "Rows to the right of the dashed line are cut at max_length; texts that differ only after it look identical.",
         lambda r: token_lengths(r.get("check") or {})),
    Spec("labels", "Labels",
         "One bar holding nearly all rows, or targets bunched at one value, leave little to learn but the mean.",
         lambda r: label_distribution(r.get("check") or {})),
)


PROBE_PLOTS = (
    Spec("lr-range", "Learning-rate range test",
         "The loss as the learning rate grows step by step: the suggested rate sits where it falls fastest, well "
         "before it turns up. A rate of yours far to the right of the turn overwrites the pretrained features.",
         lambda r: lr_range_curve(r.get("probe") or {})),
    Spec("probe-grad-norm", "Gradient flow",
         "Groups marked \"no gradient\" got none in one backward pass: frozen, or cut from the loss.",
         lambda r: probe_grad_norms(r.get("probe") or {})),
)


def draw(report: dict[str, Any]) -> list[Plot]:
    """Every plot the report has data for: a watched run's (``signals``), a data check's (``check``), a probe's.

    A plot whose builder raises is reported on the page with its error; the others are still drawn.
    """
    import matplotlib

    specs = ((RUN_PLOTS if report.get("signals") else ()) + (CHECK_PLOTS if report.get("check") else ())
             + (PROBE_PLOTS if report.get("probe") else ()))
    out = []
    with matplotlib.rc_context(STYLE):
        for spec in specs:
            try:
                fig = spec.build(report)
                if fig is not None:
                    out.append(Plot(spec.id, spec.title, spec.caption, svg=to_svg(fig)))
            except Exception as exc:  # one bad series must not cost the whole report
                out.append(Plot(spec.id, spec.title, spec.caption, error=f"{type(exc).__name__}: {exc}"))
    return out
