"""`repro report`: reproduced numbers beside the published ones, from files on disk only.

Reads ``runs/<experiment>/<hash>/spec.json`` and each ``seed-<k>/`` (train results and log,
samples, ``eval-*/metrics.json``), groups runs by paper and experiment, and renders Jinja
templates to Markdown (tabulate), self-contained HTML (embedded PNGs, loss curves) or LaTeX
(booktabs). Published rows that were never run stay in the table as "not run"; half-finished
runs are listed as such; nothing here runs a model.
"""

from __future__ import annotations

import base64
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

import attrs
import jinja2
from tabulate import tabulate

TEMPLATES = Path(__file__).with_name("templates")
LOWER_IS_BETTER = {"fid", "kid", "fid_domain", "mmd", "sliced_wasserstein", "mode_weight_error"}
DEFAULT_TOLERANCE = 0.10  # relative, when a published number has no uncertainty


@attrs.define
class SeedResult:
    seed: int
    status: str  # complete | partial | training | nothing
    metrics: dict[str, float] = attrs.Factory(dict)
    protocol: dict[str, Any] = attrs.Factory(dict)
    iterations: int | None = None
    grid: Path | None = None
    strip: Path | None = None
    log: list[dict[str, Any]] = attrs.Factory(list)


@attrs.define
class RunRecord:
    experiment: str
    hash: str
    paper: str
    description: str
    sweep: dict[str, str]
    published: list[dict[str, Any]]
    seeds: list[SeedResult]
    path: Path

    @property
    def complete_seeds(self) -> list[SeedResult]:
        return [s for s in self.seeds if s.status == "complete"]

    def stat(self, metric: str) -> tuple[float, float, int] | None:
        vals = [s.metrics[metric] for s in self.complete_seeds if metric in s.metrics]
        if not vals:
            return None
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return statistics.fmean(vals), sd, len(vals)


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _seed(folder: Path) -> SeedResult:
    try:
        k = int(folder.name.split("-", 1)[1])
    except (IndexError, ValueError):
        k = -1
    res = SeedResult(k, "nothing")
    train = folder / "train"
    tr = _read_json(train / "results.json") or {}
    res.iterations = tr.get("iterations")
    log = train / "log.jsonl"
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                res.log.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill
        if res.iterations is None and res.log:
            res.iterations = res.log[-1].get("step")
        res.status = "training"
    samples = sorted(folder.glob("sample-*"))
    for s in samples:
        if (s / "grid.png").exists():
            res.grid = s / "grid.png"
        if (s / "intermediates.png").exists():
            res.strip = s / "intermediates.png"
        res.status = "partial"
    for e in sorted(folder.glob("eval-*")):
        m = _read_json(e / "metrics.json")
        if (e / "DONE").exists() and isinstance(m, dict):
            res.protocol = m.get("protocol", {}) or {}
            res.metrics = {
                k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            res.status = "complete"
            if res.iterations is None:
                res.iterations = res.protocol.get("iterations_trained")
        elif res.status != "complete":
            res.status = "partial"
    if (
        res.status == "partial"
        and not list(folder.glob("eval-*"))
        and all((s / "DONE").exists() for s in samples)
    ):
        res.status = "sampled"
    return res


def collect(runs_dir: str | Path) -> list[RunRecord]:
    root = Path(runs_dir)
    out: list[RunRecord] = []
    if not root.is_dir():
        return out
    for spec_path in sorted(root.glob("*/*/spec.json")):
        spec = _read_json(spec_path)
        if not isinstance(spec, dict):
            continue
        d = spec_path.parent
        seeds = [_seed(s) for s in sorted(d.glob("seed-*")) if s.is_dir()]
        out.append(
            RunRecord(
                experiment=str(spec.get("experiment", d.parent.name)),
                hash=str(spec.get("hash", d.name)),
                paper=str(spec.get("paper") or "other experiments"),
                description=str(spec.get("description", "")),
                sweep={k: str(v) for k, v in (spec.get("sweep") or {}).items()},
                published=list(spec.get("published") or []),
                seeds=seeds,
                path=d,
            )
        )
    return out


# ----------------------------------------------------------------------------- comparison rows
def verdict(value: float, pub: float, err: float | None, tolerance: float) -> str:
    delta = value - pub
    if err is not None and err > 0 and abs(delta) <= err:
        return "within published uncertainty"
    if abs(delta) <= tolerance * abs(pub):
        return f"within {tolerance:.0%}"
    return "off"


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}g}"


def comparison_rows(records: list[RunRecord], tolerance: float) -> list[dict[str, Any]]:
    """One row per (experiment, published label, metric), run or not."""
    rows: list[dict[str, Any]] = []
    for r in records:
        if r.sweep and any(k != "seed" for k in r.sweep):
            continue  # sweeps get their own tables
        proto = next((s.protocol for s in r.complete_seeds), {})
        for pub in r.published:
            for metric, pv in (pub.get("values") or {}).items():
                st = r.stat(metric)
                p, e = float(pv["value"]), pv.get("error")
                row = {
                    "paper": r.paper,
                    "experiment": r.experiment,
                    "label": pub.get("label", ""),
                    "metric": metric,
                    "published": _fmt(p) + (f" ± {_fmt(e, 3)}" if e is not None else ""),
                    "reproduced": "not run",
                    "delta": "–",
                    "delta_pct": "–",
                    "verdict": "not run" if not r.seeds else _status_word(r),
                    "seeds": 0,
                    "samples": proto.get("samples", "–"),
                    "reference": proto.get("reference", "–"),
                    "implementation": proto.get("implementation", "–"),
                    "weights": (proto.get("inception_weights_sha256") or "–")[:12],
                    "iterations": next(
                        (s.iterations for s in r.complete_seeds if s.iterations is not None), "–"
                    ),
                }
                if st is not None:
                    mean, sd, n = st
                    row.update(
                        reproduced=_fmt(mean) + (f" ± {_fmt(sd, 3)}" if n > 1 else ""),
                        delta=f"{mean - p:+.4g}",
                        delta_pct=f"{(mean - p) / abs(p) * 100:+.1f}%" if p else "–",
                        verdict=verdict(mean, p, e, tolerance),
                        seeds=n,
                    )
                rows.append(row)
    return rows


def _status_word(r: RunRecord) -> str:
    states = {s.status for s in r.seeds}
    if "complete" in states:
        return "metric not computed"
    return "running / incomplete"


def result_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Every run with its own numbers (experiments without published values too)."""
    rows = []
    for r in records:
        if not r.seeds and r.path == Path():
            continue  # a published result never run: only in the comparison tables
        metrics = sorted({m for s in r.complete_seeds for m in s.metrics if not m.endswith("_std")})
        nums = []
        for m in metrics:
            st = r.stat(m)
            if st is not None:
                nums.append(f"{m} {_fmt(st[0])}" + (f" ± {_fmt(st[1], 3)}" if st[2] > 1 else ""))
        states = ", ".join(f"seed {s.seed}: {s.status}" for s in r.seeds) or "no seed folder"
        rows.append(
            {
                "paper": r.paper,
                "experiment": r.experiment,
                "hash": r.hash,
                "sweep": ", ".join(f"{k} = {v}" for k, v in r.sweep.items() if k != "seed") or "–",
                "status": states,
                "numbers": "; ".join(nums) or "–",
            }
        )
    return rows


def sweep_tables(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Per experiment with swept keys: one row per sweep point, the best value per metric marked."""
    by_exp: dict[str, list[RunRecord]] = {}
    for r in records:
        if any(k != "seed" for k in r.sweep):
            by_exp.setdefault(r.experiment, []).append(r)
    tables = []
    for exp, recs in sorted(by_exp.items()):
        keys = sorted({k for r in recs for k in r.sweep if k != "seed"})
        metrics = sorted(
            {m for r in recs for s in r.complete_seeds for m in s.metrics if not m.endswith("_std")}
        )
        best: dict[str, float] = {}
        for m in metrics:
            vals = [st[0] for r in recs if (st := r.stat(m)) is not None]
            if vals:
                best[m] = min(vals) if m in LOWER_IS_BETTER else max(vals)
        rows = []
        for r in sorted(recs, key=lambda r: [r.sweep.get(k, "") for k in keys]):
            row = [r.sweep.get(k, "–") for k in keys]
            for m in metrics:
                st = r.stat(m)
                if st is None:
                    row.append("not run" if not r.complete_seeds else "–")
                else:
                    cell = _fmt(st[0]) + (f" ± {_fmt(st[1], 3)}" if st[2] > 1 else "")
                    row.append(cell + (" *" if st[0] == best.get(m) and len(recs) > 1 else ""))
            rows.append(row)
        tables.append({"experiment": exp, "headers": keys + metrics, "rows": rows})
    return tables


# ----------------------------------------------------------------------------- rendering
def _png_b64(path: Path | None) -> str | None:
    if path is None or not path.exists():
        return None
    return base64.b64encode(path.read_bytes()).decode()


def loss_curve_b64(log: list[dict[str, Any]], title: str) -> str | None:
    if not log:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in log]
    fig, ax = plt.subplots(figsize=(5, 3), dpi=90)
    per = [r.get("per_level") or [] for r in log]
    L = max((len(p) for p in per), default=0)
    for i in range(L):
        ys = [p[i] if i < len(p) else float("nan") for p in per]
        ax.plot(steps, ys, lw=0.8, label=f"level {i + 1}" if L <= 10 else None)
    ax.plot(steps, [r["loss"] for r in log], "k", lw=1.5, label="loss")
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    if L <= 10:
        ax.legend(fontsize=5, ncol=2)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


_CMP_COLS = [
    ("experiment", "experiment"),
    ("label", "published in"),
    ("metric", "metric"),
    ("published", "published"),
    ("reproduced", "reproduced"),
    ("delta", "Δ"),
    ("delta_pct", "Δ %"),
    ("verdict", "verdict"),
    ("seeds", "seeds"),
    ("samples", "samples"),
    ("reference", "reference"),
    ("implementation", "implementation"),
    ("weights", "weights sha256"),
    ("iterations", "iterations"),
]


def _latex_escape(s: Any) -> str:
    t = str(s)
    for a, b in [("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("±", r"$\pm$"),
                 ("Δ", r"$\Delta$"), ("–", "--"), ("σ", r"$\sigma$")]:  # fmt: skip
        t = t.replace(a, b)
    return t


def render(
    records: list[RunRecord], fmt: str = "md", tolerance: float = DEFAULT_TOLERANCE, runs_dir: str = ""
) -> str:
    cmp_rows = comparison_rows(records, tolerance)
    papers = sorted({r["paper"] for r in cmp_rows} | {r.paper for r in records})
    ctx: dict[str, Any] = {
        "runs_dir": runs_dir,
        "n_runs": sum(1 for r in records if r.seeds),
        "n_complete": sum(1 for r in records for s in r.seeds if s.status == "complete"),
        "n_partial": sum(1 for r in records for s in r.seeds if s.status != "complete"),
        "papers": [
            {"name": p, "rows": [r for r in cmp_rows if r["paper"] == p]}
            for p in papers
            if any(r["paper"] == p for r in cmp_rows)
        ],
        "columns": _CMP_COLS,
        "results": result_rows(records),
        "sweeps": sweep_tables(records),
        "tolerance": tolerance,
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["tex"] = _latex_escape
    if fmt == "md":
        env.filters["table"] = lambda rows, cols: tabulate(
            [[r[k] for k, _ in cols] for r in rows], headers=[h for _, h in cols], tablefmt="github"
        )
        env.filters["grid"] = lambda t: tabulate(t["rows"], headers=t["headers"], tablefmt="github")
        env.filters["results"] = lambda rows: tabulate(
            [[r["experiment"], r["sweep"], r["hash"], r["status"], r["numbers"]] for r in rows],
            headers=["experiment", "sweep", "hash", "status", "numbers"],
            tablefmt="github",
        )
        return env.get_template("report.md.j2").render(**ctx)
    if fmt == "html":
        ctx["figures"] = [
            {
                "title": f"{r.experiment} ({r.hash}) seed {s.seed}",
                "grid": _png_b64(s.grid),
                "strip": _png_b64(s.strip),
                "loss": loss_curve_b64(s.log, f"{r.experiment} seed {s.seed}: loss per noise level"),
            }
            for r in records
            for s in r.seeds
            if s.grid or s.log
        ]
        return env.get_template("report.html.j2").render(**ctx)
    if fmt == "tex":
        return env.get_template("report.tex.j2").render(**ctx)
    raise ValueError(f"unknown format {fmt!r}: use md, html or tex")


def add_expected(records: list[RunRecord], specs: list[dict[str, Any]]) -> list[RunRecord]:
    """Published results of experiments that were never run get a record with no seeds, so
    their rows say "not run" instead of disappearing. ``specs`` are canonical spec dicts."""
    present = {r.experiment for r in records}
    out = list(records)
    for sp in specs:
        if (
            sp.get("published")
            and sp["experiment"] not in present
            and not any(k != "seed" for k in sp.get("sweep") or {})
        ):
            present.add(sp["experiment"])
            out.append(
                RunRecord(
                    experiment=sp["experiment"],
                    hash=sp.get("hash", ""),
                    paper=sp.get("paper") or "other experiments",
                    description=sp.get("description", ""),
                    sweep={},
                    published=sp["published"],
                    seeds=[],
                    path=Path(),
                )
            )
    return out


def report(
    runs_dir: str | Path = "runs",
    fmt: str = "md",
    out: str | Path | None = None,
    expected: list[dict[str, Any]] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> str:
    records = add_expected(collect(runs_dir), expected or [])
    text = render(records, fmt, tolerance, runs_dir=str(runs_dir))
    if out is not None:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(p)
    return text
