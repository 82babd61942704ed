"""Figures: the report's images as base64 PNGs (matplotlib, Agg backend, imported on first
use): sample grids and intermediate strips read from disk, loss curves per noise level,
checkpoint selection and sweep plots. Torch-free."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

from ncsn_core.registry import lower_is_better
from reports.judge import _spread
from reports.read import RunRecord, _metric_names, _num, _sweep_sort_key, _value_key
from reports.shape import selection_doc

MAX_CURVES = 10  # loss curves per plot: this many noise levels, evenly spaced


# ----------------------------------------------------------------------------- figures
def _png_b64(path: Path | str | None) -> str | None:
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG"):
        return None
    return base64.b64encode(data).decode()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(ax: Any, text: str, fontsize: int = 10) -> None:
    """The plot's title wrapped to the figure's width (a long run label is not clipped)."""
    import textwrap

    fig = ax.get_figure()
    # the axes take about 70% of the figure's width (a legend beside them takes the rest)
    chars = max(20, int(fig.get_figwidth() * 0.7 * 72 / (fontsize * 0.55)))
    ax.set_title("\n".join(textwrap.wrap(text, chars)) or text, fontsize=fontsize)


def _fig_b64(fig: Any) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def loss_curve_b64(log: list[dict[str, Any]], title: str) -> str | None:
    """Training loss and the loss per noise level (at most MAX_CURVES levels, evenly spaced)
    against the step, as a base64 PNG (matplotlib, Agg backend); the legend beside the plot."""
    if not log:
        return None
    plt = _plt()
    steps = [float(r["step"]) for r in log]
    per = [r.get("per_level") if isinstance(r.get("per_level"), list) else [] for r in log]
    n_levels = max((len(p) for p in per), default=0)
    shown = list(range(n_levels))
    if n_levels > MAX_CURVES:
        shown = sorted({round(i * (n_levels - 1) / (MAX_CURVES - 1)) for i in range(MAX_CURVES)})

    def val(v: Any) -> float:
        x = _num(v)
        return x if x is not None and math.isfinite(x) and x > 0 else float("nan")

    fig, ax = plt.subplots(figsize=(7.0, 3.6), dpi=100)
    cmap = plt.get_cmap("viridis")
    for j, i in enumerate(shown):
        ys = [val(p[i]) if i < len(p) else float("nan") for p in per]
        lab = f"level {i + 1}" + (
            " (σ₁, largest)" if i == 0 else " (σ_L, smallest)" if i == n_levels - 1 else ""
        )
        ax.plot(steps, ys, lw=1.0, color=cmap(j / max(1, len(shown) - 1)), label=lab)
    ax.plot(steps, [val(r["loss"]) for r in log], "k", lw=2.0, label="total loss")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (log scale)")
    if any(math.isfinite(val(r["loss"])) for r in log):
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        plain = FuncFormatter(lambda y, _: f"{y:.3g}")  # 31, not 3.1 × 10¹
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)
    _title(ax, title)
    ax.legend(
        fontsize=8,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        title=f"{n_levels} noise levels" if n_levels else None,
        title_fontsize=8,
    )
    return _fig_b64(fig)


def selection_plot_b64(sel: dict[str, Any] | None, title: str) -> str | None:
    """The select stage's metric against the training step, the chosen checkpoint marked."""
    doc = selection_doc(sel)
    pts = [(r["step"], r["value"]) for r in (doc or {}).get("rows", []) if r["value"] is not None]
    if doc is None or not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=100)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
    for r in doc["rows"]:
        if r["best"] and r["value"] is not None:
            ax.plot([r["step"]], [r["value"]], marker="*", markersize=14, color="C3", label="chosen")
            ax.legend(fontsize=8)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{doc['metric']} ({doc['direction']} is better)")
    _title(ax, title)
    ax.grid(alpha=0.3)
    return _fig_b64(fig)


def sweep_plot_b64(recs: list[RunRecord], key: str, metric: str, title: str) -> str | None:
    """A metric (mean ± spread) against a swept numeric setting."""
    pts = []
    for r in recs:
        st = r.stat(metric)
        v = _value_key(r.swept.get(key, ""))
        if st is not None and v[0] == 0:
            pts.append((v[1], st[0], _spread(r, metric) or 0.0))
    if len(pts) < 2:
        return None
    pts.sort()
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=100)
    ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3)
    ax.set_xlabel(key)
    ax.set_ylabel(f"{metric} ({'lower' if lower_is_better(metric) else 'higher'} is better)")
    if all(p[0] > 0 for p in pts) and max(p[0] for p in pts) / min(p[0] for p in pts) > 20:
        ax.set_xscale("log")
    _title(ax, title)
    ax.grid(alpha=0.3)
    return _fig_b64(fig)


def figures(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Per run: the sample grid, the intermediate strip and the loss per noise level of its first
    seed with them, headed by the run's label (experiment and the settings that differ); per
    sweep over a numeric setting: each metric against it."""
    out = []
    drawn: dict[Path, str] = {}  # a train folder → the title its loss curve is drawn under
    for r in sorted(records, key=lambda r: (r.paper, r.experiment, _sweep_sort_key(r.swept))):
        for s in r.seeds:
            if s.grid or s.strip or s.log or s.selection:
                title = r.label + (f", seed {s.seed}" if len(r.seeds) > 1 else "") + f" ({s.status})"
                shared = drawn.get(s.train) if s.train is not None and s.log else None
                if s.train is not None and s.log and shared is None:
                    drawn[s.train] = title
                out.append(
                    {
                        "title": title,
                        "grid": _png_b64(s.grid),
                        "strip": _png_b64(s.strip),
                        # a training shared by several runs: its curve once, under the first
                        "loss": None
                        if shared
                        else loss_curve_b64(s.log, f"{r.label}: training loss per noise level"),
                        "loss_shared": shared,
                        "selection": selection_plot_b64(
                            s.selection,
                            f"{r.label}: checkpoint selection by {(s.selection or {}).get('metric')}",
                        ),
                    }
                )
                break
    by_exp: dict[str, list[RunRecord]] = {}
    for r in records:
        if len(r.swept) == 1:
            by_exp.setdefault(r.experiment, []).append(r)
    for exp, recs in sorted(by_exp.items()):
        key = next(iter(recs[0].swept))
        for m in _metric_names(recs):
            img = sweep_plot_b64(recs, key, m, f"{exp}: {m} vs {key}")
            if img:
                out.append({"title": f"{exp}: {m} vs {key}", "plot": img})
    return out
