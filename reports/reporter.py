"""`repro report`: reproduced numbers beside the published ones, from files on disk only.

Reads the layout of docs/architecture.md ("Runs on disk", :mod:`ncsn_core.layout`):
``runs/<experiment>/<run-hash>/spec.json`` and each ``seed-<k>/`` (``train/`` with
``results.json`` and ``log.jsonl``, ``sample-*/`` with ``grid.png`` and ``intermediates.png``,
``eval-*/metrics.json``); a stage folder without ``DONE`` is incomplete. Runs are grouped by
paper; each published number gets a row (reproduced mean ± std over seeds, Δ, Δ %, a verdict
and the protocol) whether or not it was run, sweeps get tables with the best value marked, and
the result is rendered by Jinja templates to Markdown (tabulate), one self-contained HTML file
(embedded PNGs: sample grids, intermediate strips, loss curves per noise level) or LaTeX
(booktabs). Nothing here runs a model, and nothing found on disk makes it crash: what is
missing or unreadable is said in the report.
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

from ncsn_core import io as atomic
from ncsn_core import layout
from ncsn_core.registry import lower_is_better

TEMPLATES = Path(__file__).with_name("templates")
FORMATS = ("md", "html", "tex")
DEFAULT_TOLERANCE = 0.10  # relative; the verdict's band when the paper gives no uncertainty
MAX_CURVES = 10  # loss curves per plot: this many noise levels, evenly spaced

# Stage states of one seed, from least to most done.
STATES = ("empty", "training", "trained", "sampling", "sampled", "evaluating", "complete")


@attrs.define
class SeedResult:
    seed: int
    status: str = "empty"  # one of STATES
    metrics: dict[str, float] = attrs.Factory(dict)
    protocol: dict[str, Any] = attrs.Factory(dict)
    iterations: int | None = None
    grid: Path | None = None
    strip: Path | None = None
    log: list[dict[str, Any]] = attrs.Factory(list)
    path: Path = Path()


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
    evaluates: bool = True  # the spec has an evaluate block
    problems: list[str] = attrs.Factory(list)

    @property
    def ran(self) -> bool:
        return bool(self.seeds)

    @property
    def swept(self) -> dict[str, str]:
        """The sweep point without the seed (seeds are repeats, not sweep points)."""
        return {k: v for k, v in self.sweep.items() if k != "seed"}

    @property
    def complete_seeds(self) -> list[SeedResult]:
        return [s for s in self.seeds if s.status == "complete"]

    def stat(self, metric: str) -> tuple[float, float, int] | None:
        """Mean, std over seeds (sample std; 0 for one seed) and the number of seeds."""
        vals = [s.metrics[metric] for s in self.complete_seeds if metric in s.metrics]
        vals = [v for v in vals if math.isfinite(v)]
        if not vals:
            return None
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return statistics.fmean(vals), sd, len(vals)

    def within_run_std(self, metric: str) -> float | None:
        """The metric's own spread (IS over splits, KID over subsets) when one seed ran."""
        seeds = [s for s in self.complete_seeds if metric in s.metrics]
        if len(seeds) == 1:
            v = seeds[0].metrics.get(metric + "_std")
            return v if v is not None and math.isfinite(v) else None
        return None

    def state_summary(self) -> str:
        if not self.seeds:
            return "not run"
        counts: dict[str, int] = {}
        for s in self.seeds:
            counts[s.status] = counts.get(s.status, 0) + 1
        return ", ".join(f"{n} {st}" for st, n in sorted(counts.items(), key=lambda kv: -STATES.index(kv[0])))


# ----------------------------------------------------------------------------- reading
def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _read_log(p: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        if isinstance(rec, dict) and _num(rec.get("step")) is not None and _num(rec.get("loss")) is not None:
            out.append(rec)
    return out


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _latest(folders: list[Path]) -> list[Path]:
    """Stage folders, most recently written first."""

    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    return sorted(folders, key=mtime, reverse=True)


def read_seed(folder: Path, evaluates: bool = True, runs_root: Path | None = None) -> SeedResult:
    """What one ``seed-<k>`` folder holds: its furthest stage and its numbers."""
    res = SeedResult(layout.seed_number(folder), path=folder)
    samples = _latest(layout.stage_dirs(folder, layout.SAMPLE))
    evals = _latest(layout.stage_dirs(folder, layout.EVAL))
    # The train folder: our own, or the one the sample stage recorded (a reused training run).
    train = layout.stage_dir(folder, layout.TRAIN)
    if not train.is_dir():
        for s in samples:
            st = layout.stage_info(s)
            if st is not None and st.get(layout.TRAIN):
                cand = layout.resolve(str(st[layout.TRAIN]), folder.parent, runs_root)
                if cand is not None and cand.is_dir():
                    train = cand
                    break
    if train.is_dir():
        res.status = "trained" if layout.is_complete(train) else "training"
        res.log = _read_log(train / layout.LOG)
        tr = _read_json(train / layout.RESULTS)
        if isinstance(tr, dict) and _num(tr.get("iterations")) is not None:
            res.iterations = int(tr["iterations"])
        elif res.log:
            res.iterations = int(res.log[-1]["step"])
    for s in samples:
        if res.grid is None and (s / layout.GRID).is_file():
            res.grid = s / layout.GRID
        if res.strip is None and (s / layout.STRIP).is_file():
            res.strip = s / layout.STRIP
    if samples:
        res.status = "sampled" if any(layout.is_complete(s) for s in samples) else "sampling"
        if res.status == "sampled" and not evaluates:
            res.status = "complete"  # nothing to evaluate: the samples are the result
    for e in evals:
        m = _read_json(e / layout.METRICS)
        if layout.is_complete(e) and isinstance(m, dict):
            proto = m.get("protocol")
            res.protocol = proto if isinstance(proto, dict) else {}
            res.metrics = {
                k: float(v)
                for k, v in m.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "protocol"
            }
            res.status = "complete"
            if res.iterations is None and _num(res.protocol.get("iterations_trained")) is not None:
                res.iterations = int(res.protocol["iterations_trained"])
            break
    else:
        if evals:
            res.status = "evaluating"
    return res


def collect(runs_dir: str | Path) -> list[RunRecord]:
    """Every run under ``runs_dir`` (missing or empty: an empty list)."""
    root = Path(runs_dir)
    out: list[RunRecord] = []
    if not root.is_dir():
        return out
    for d in layout.find_run_dirs(root):
        spec_file = d / layout.SPEC
        spec = _read_json(spec_file)
        problems = []
        if not isinstance(spec, dict):
            problems.append(f"{spec_file}: " + ("missing" if not spec_file.exists() else "unreadable"))
            spec = {}
        evaluates = spec.get("evaluate", True) is not None
        seeds = [read_seed(s, evaluates, root) for s in layout.seed_dirs(d)]
        published = [p for p in (spec.get("published") or []) if isinstance(p, dict)]
        sweep = spec.get("sweep") if isinstance(spec.get("sweep"), dict) else {}
        out.append(
            RunRecord(
                experiment=str(spec.get("experiment") or (d.parent.name if d != root else d.name)),
                hash=str(spec.get("hash") or d.name),
                paper=str(spec.get("paper") or "other experiments"),
                description=str(spec.get("description") or ""),
                sweep={str(k): str(v) for k, v in sweep.items()},
                published=published,
                seeds=seeds,
                path=d,
                evaluates=evaluates,
                problems=problems,
            )
        )
    return out


def add_expected(records: list[RunRecord], specs: list[dict[str, Any]]) -> list[RunRecord]:
    """Records, with the never-run experiments of ``specs`` (canonical spec dicts, e.g. of
    ``papers/*.exp``) added without seeds: every published result keeps its "not run" row, and
    a sweep that ran in part keeps its missing points."""
    present = {(r.experiment, _key(r.swept)) for r in records}
    ran_experiments = {r.experiment for r in records}
    out = list(records)
    for sp in specs:
        if not isinstance(sp, dict) or "experiment" not in sp:
            continue
        sweep = {str(k): str(v) for k, v in (sp.get("sweep") or {}).items() if k != "seed"}
        exp = str(sp["experiment"])
        if (exp, _key(sweep)) in present or exp in ran_experiments and not sweep:
            continue
        if not sp.get("published") and not (sweep and exp in ran_experiments):
            continue
        present.add((exp, _key(sweep)))
        out.append(
            RunRecord(
                experiment=exp,
                hash=str(sp.get("hash", "")),
                paper=str(sp.get("paper") or "other experiments"),
                description=str(sp.get("description") or ""),
                sweep=sweep,
                published=[p for p in sp.get("published") or [] if isinstance(p, dict)],
                seeds=[],
                path=Path(),
                evaluates=sp.get("evaluate", True) is not None,
            )
        )
    return out


def _key(d: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(d.items()))


# ----------------------------------------------------------------------------- numbers
def fmt_num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def verdict(value: float, pub: float, err: float | None, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Within the published uncertainty (|Δ| ≤ its ±), within ``tolerance`` (relative), or off."""
    delta = value - pub
    if err is not None and err > 0 and abs(delta) <= err:
        return "within published uncertainty"
    if abs(delta) <= tolerance * abs(pub):
        return f"within {tolerance:.0%}"
    return "off"


def _display_names(records: list[RunRecord]) -> dict[int, str]:
    """Row labels: the experiment, its sweep point, and its hash when several runs of the same
    experiment and point exist (e.g. a quick run with --set beside the full one)."""
    count: dict[tuple[str, tuple], int] = {}
    for r in records:
        k = (r.experiment, _key(r.swept))
        count[k] = count.get(k, 0) + 1
    names = {}
    for r in records:
        name = r.experiment
        if r.swept:
            name += " [" + ", ".join(f"{k} = {v}" for k, v in sorted(r.swept.items())) + "]"
        if count[(r.experiment, _key(r.swept))] > 1:
            name += f" ({r.hash[:8]})"
        names[id(r)] = name
    return names


def _protocol_value(r: RunRecord, *keys: str) -> str:
    """A protocol field over the complete seeds ("a / b" when the seeds differ)."""
    vals: list[str] = []
    for s in r.complete_seeds:
        v: Any = s.protocol
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None and str(v) not in vals:
            vals.append(str(v))
    return " / ".join(vals) if vals else "–"


def protocol_of(r: RunRecord, metric: str) -> dict[str, str]:
    """samples, reference, implementation, weights hash, iterations trained."""
    if metric in ("fid_domain", "is_domain"):
        weights = _protocol_value(r, "domain_classifier", "sha256")
    else:
        weights = _protocol_value(r, "inception_weights_sha256")
    iters = sorted({s.iterations for s in r.complete_seeds if s.iterations is not None})
    return {
        "samples": _protocol_value(r, "samples"),
        "reference": _protocol_value(r, "reference"),
        "implementation": _protocol_value(r, "implementation"),
        "weights": " / ".join(w[:12] for w in weights.split(" / ")),
        "iterations": " / ".join(str(i) for i in iters) or "–",
    }


def _published_value(pv: Any) -> tuple[float | None, float | None]:
    if isinstance(pv, dict):
        v, e = _num(pv.get("value")), _num(pv.get("error"))
    else:
        v, e = _num(pv), None
    return v, e


def comparison_rows(records: list[RunRecord], tolerance: float = DEFAULT_TOLERANCE) -> list[dict[str, Any]]:
    """One row per (run, published label, metric), run or not."""
    rows: list[dict[str, Any]] = []
    names = _display_names(records)
    for r in sorted(records, key=lambda r: (r.paper, r.experiment, _sweep_sort_key(r.swept))):
        for pub in r.published:
            values = pub.get("values") if isinstance(pub.get("values"), dict) else {}
            for metric, pv in values.items():
                p, e = _published_value(pv)
                st = r.stat(metric)
                row: dict[str, Any] = {
                    "paper": r.paper,
                    "experiment": names[id(r)],
                    "label": str(pub.get("label", "")),
                    "metric": metric,
                    "published": fmt_num(p) + (f" ± {fmt_num(e, 3)}" if e is not None else ""),
                    "reproduced": "not run",
                    "delta": "–",
                    "delta_pct": "–",
                    "verdict": "not run",
                    "seeds": 0,
                    **protocol_of(r, metric),
                }
                if r.ran and st is None:
                    row["reproduced"] = "–"
                    if r.complete_seeds:
                        row["verdict"] = "not computed"
                    else:
                        row["verdict"] = f"incomplete ({r.state_summary()})"
                if st is not None and p is not None:
                    mean, sd, n = st
                    spread = sd if n > 1 else r.within_run_std(metric)
                    cell = fmt_num(mean) + (f" ± {fmt_num(spread, 3)}" if spread is not None else "")
                    if n == 1 and spread is not None:
                        cell += " (within run)"
                    row.update(
                        reproduced=cell,
                        delta=f"{mean - p:+.4g}",
                        delta_pct=f"{(mean - p) / abs(p) * 100:+.1f}%" if p else "–",
                        verdict=verdict(mean, p, e, tolerance),
                        seeds=n,
                    )
                rows.append(row)
    return rows


def _metric_names(recs: list[RunRecord]) -> list[str]:
    return sorted({m for r in recs for s in r.complete_seeds for m in s.metrics if not m.endswith("_std")})


def result_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Every run folder found, with its state and its own numbers."""
    names = _display_names(records)
    rows = []
    for r in sorted(records, key=lambda r: (r.paper, r.experiment, _sweep_sort_key(r.swept))):
        if not r.ran and r.path == Path():
            continue  # expected but never run: only in the comparison and sweep tables
        nums = []
        for m in _metric_names([r]):
            st = r.stat(m)
            if st is not None:
                nums.append(f"{m} {fmt_num(st[0])}" + (f" ± {fmt_num(st[1], 3)}" if st[2] > 1 else ""))
        seeds = ", ".join(f"seed {s.seed}: {s.status}" for s in r.seeds) or "no seed folder"
        iters = sorted({s.iterations for s in r.seeds if s.iterations is not None})
        rows.append(
            {
                "paper": r.paper,
                "experiment": names[id(r)],
                "hash": r.hash,
                "status": seeds + ("; " + "; ".join(r.problems) if r.problems else ""),
                "iterations": " / ".join(str(i) for i in iters) or "–",
                "numbers": "; ".join(nums) or "–",
            }
        )
    return rows


def _sweep_sort_key(sweep: dict[str, str]) -> list[tuple[int, float, str]]:
    out = []
    for k in sorted(sweep):
        v = sweep[k]
        try:
            out.append((0, float(v), v))
        except ValueError:
            out.append((1, 0.0, v))
    return out


def sweep_tables(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Per experiment with swept keys: one row per sweep point (mean ± std over seeds), the
    best value per metric marked; points not run say so."""
    by_exp: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.swept:
            by_exp.setdefault(r.experiment, []).append(r)
    tables = []
    for exp, recs in sorted(by_exp.items()):
        keys = sorted({k for r in recs for k in r.swept})
        metrics = _metric_names(recs)
        best: dict[str, float] = {}
        for m in metrics:
            vals = [st[0] for r in recs if (st := r.stat(m)) is not None]
            if len(vals) > 1:
                best[m] = min(vals) if lower_is_better(m) else max(vals)
        rows = []
        for r in sorted(recs, key=lambda r: _sweep_sort_key(r.swept)):
            cells: list[dict[str, Any]] = [{"text": r.swept.get(k, "–"), "best": False} for k in keys]
            for m in metrics:
                st = r.stat(m)
                if st is None:
                    text = "not run" if not r.ran else ("–" if r.complete_seeds else "incomplete")
                    cells.append({"text": text, "best": False})
                else:
                    text = fmt_num(st[0]) + (f" ± {fmt_num(st[1], 3)}" if st[2] > 1 else "")
                    cells.append({"text": text, "best": st[0] == best.get(m)})
            cells.append({"text": r.state_summary(), "best": False})
            rows.append(cells)
        directions = ["" for _ in keys] + [
            " ↓" if lower_is_better(m) else " ↑" for m in metrics
        ] + [""]  # fmt: skip
        tables.append(
            {
                "experiment": exp,
                "paper": recs[0].paper,
                "headers": keys + metrics + ["seeds"],
                "directions": directions,
                "rows": rows,
            }
        )
    return tables


# ----------------------------------------------------------------------------- figures
def _png_b64(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG"):
        return None
    return base64.b64encode(data).decode()


def loss_curve_b64(log: list[dict[str, Any]], title: str) -> str | None:
    """Training loss and the loss per noise level (at most MAX_CURVES levels, evenly spaced)
    against the step, as a base64 PNG (matplotlib, Agg backend)."""
    if not log:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [float(r["step"]) for r in log]
    per = [r.get("per_level") if isinstance(r.get("per_level"), list) else [] for r in log]
    n_levels = max((len(p) for p in per), default=0)
    shown = (
        sorted({round(i * (n_levels - 1) / (MAX_CURVES - 1)) for i in range(MAX_CURVES)}) if n_levels else []
    )
    if n_levels <= MAX_CURVES:
        shown = list(range(n_levels))

    def val(v: Any) -> float:
        x = _num(v)
        return x if x is not None and math.isfinite(x) and x > 0 else float("nan")

    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=90)
    cmap = plt.get_cmap("viridis")
    for j, i in enumerate(shown):
        ys = [val(p[i]) if i < len(p) else float("nan") for p in per]
        ax.plot(steps, ys, lw=0.8, color=cmap(j / max(1, len(shown) - 1)), label=f"level {i + 1}")
    ax.plot(steps, [val(r["loss"]) for r in log], "k", lw=1.6, label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if any(math.isfinite(val(r["loss"])) for r in log):
        ax.set_yscale("log")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=5, ncol=2, title=f"{n_levels} levels" if n_levels else None, title_fontsize=5)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


# ----------------------------------------------------------------------------- rendering
COMPARISON_COLUMNS = [
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
RESULT_COLUMNS = [
    ("experiment", "experiment"),
    ("hash", "hash"),
    ("status", "status"),
    ("iterations", "iterations"),
    ("numbers", "numbers (mean ± std over seeds)"),
]

_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "–": "--",
    "σ": r"$\sigma$",
    "↓": r"$\downarrow$",
    "↑": r"$\uparrow$",
    "→": r"$\to$",
    "≈": r"$\approx$",
    "×": r"$\times$",
}


def latex_escape(s: Any) -> str:
    return "".join(_TEX.get(c, c) for c in str(s))


def _verdict_class(v: str) -> str:
    if v == "off":
        return "off"
    if v.startswith("within"):
        return "ok"
    return "notrun"


def _summary(records: list[RunRecord], runs_dir: str) -> dict[str, Any]:
    ran = [r for r in records if r.ran or r.path != Path()]
    states: dict[str, int] = {}
    for r in ran:
        for s in r.seeds:
            states[s.status] = states.get(s.status, 0) + 1
    complete = states.get("complete", 0)
    incomplete = sum(n for st, n in states.items() if st != "complete")
    if not ran:
        found = f"No runs found under {runs_dir}." if runs_dir else "No runs found."
    else:
        found = (
            f"Found {len(ran)} run folder(s) of {len({r.experiment for r in ran})} experiment(s)"
            + (f" under {runs_dir}" if runs_dir else "")
            + f": {complete} complete seed(s), {incomplete} incomplete"
            + (
                " (" + ", ".join(f"{n} {st}" for st, n in sorted(states.items()) if st != "complete") + ")"
                if incomplete
                else ""
            )
            + "."
        )
    problems = [p for r in records for p in r.problems]
    return {"found": found, "problems": problems, "n_runs": len(ran), "n_complete": complete}


def render(
    records: list[RunRecord], fmt: str = "md", tolerance: float = DEFAULT_TOLERANCE, runs_dir: str = ""
) -> str:
    """The report as Markdown (``md``), self-contained HTML (``html``) or LaTeX (``tex``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use md, html or tex")
    cmp_rows = comparison_rows(records, tolerance)
    for row in cmp_rows:
        row["verdict_class"] = _verdict_class(row["verdict"])
    papers = sorted({r["paper"] for r in cmp_rows})
    ctx: dict[str, Any] = {
        "runs_dir": runs_dir,
        **_summary(records, runs_dir),
        "papers": [{"name": p, "rows": [r for r in cmp_rows if r["paper"] == p]} for p in papers],
        "columns": COMPARISON_COLUMNS,
        "result_columns": RESULT_COLUMNS,
        "results": result_rows(records),
        "sweeps": sweep_tables(records),
        "tolerance": tolerance,
        "tolerance_pct": f"{tolerance:.0%}",
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["tex"] = latex_escape
    env.filters["table"] = _md_table
    env.filters["sweep_table"] = _md_sweep
    if fmt == "html":
        names = _display_names(records)
        ctx["figures"] = [
            {
                "title": f"{names[id(r)]}, seed {s.seed} ({s.status})",
                "grid": _png_b64(s.grid),
                "strip": _png_b64(s.strip),
                "loss": loss_curve_b64(s.log, f"{names[id(r)]} seed {s.seed}: training loss per noise level"),
            }
            for r in sorted(records, key=lambda r: (r.paper, r.experiment, _sweep_sort_key(r.swept)))
            for s in r.seeds
            if s.grid or s.strip or s.log
        ]
    return env.get_template(f"report.{fmt}.j2").render(**ctx)


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    return tabulate(
        [[_md_cell(r[k]) for k, _ in columns] for r in rows],
        headers=[h for _, h in columns],
        tablefmt="github",
        disable_numparse=True,
    )


def _md_sweep(t: dict[str, Any]) -> str:
    rows = [[_md_cell(c["text"]) + (" **(best)**" if c["best"] else "") for c in row] for row in t["rows"]]
    headers = [h + d for h, d in zip(t["headers"], t["directions"])]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def report(
    runs_dir: str | Path = "runs",
    fmt: str = "md",
    out: str | Path | None = None,
    expected: list[dict[str, Any]] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> str:
    """Collect ``runs_dir``, add the never-run ``expected`` specs, render ``fmt``; written
    atomically to ``out`` when given. Returns the text."""
    records = add_expected(collect(runs_dir), expected or [])
    text = render(records, fmt, tolerance, runs_dir=str(runs_dir))
    if out is not None:
        atomic.write_text(Path(out), text)
    return text
