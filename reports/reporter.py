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
from reports import settings
from reports.tables import _numbered, fmt_num, method_notes, method_table
from reports.terminal import render_text

TEMPLATES = Path(__file__).with_name("templates")
FORMATS = ("md", "html", "tex", "json", "text")
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
    seconds: dict[str, float] = attrs.Factory(dict)  # train / sample / evaluate wall time
    nfe: int | None = None  # network evaluations per sample (the sample stage's results.json)
    # The select stage's selection.json (or, while it runs, the candidates scored so far).
    selection: dict[str, Any] | None = None


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
    spec: dict[str, Any] = attrs.Factory(dict)
    source: str = ""  # source.exp's text (which file the run came from)
    overrides: tuple[str, ...] = ()  # the --set values it was made with (overrides.json)
    label: str = ""  # the experiment and the settings that tell its runs apart (set by build)

    @property
    def flat(self) -> dict[str, str]:
        return settings.flatten(self.spec)

    @property
    def parent(self) -> str | None:
        p = self.spec.get("parent")
        return str(p) if p else None

    @property
    def released(self) -> bool:
        return bool(self.spec.get("released")) or any(
            str(s.protocol.get("weights", "")).startswith("released") for s in self.seeds
        )

    @property
    def checkpoint(self) -> str:
        """Which checkpoint was sampled: "released checkpoint", "last" or "step N"."""
        if self.released:
            return "released checkpoint"
        c = ((self.spec.get("sample") or {}).get("params") or {}).get("checkpoint", "last")
        if c == "best" and self.selected_by:
            sel = self.selection or {}
            n = len(sel.get("candidates") or [])
            of = f"best of {n} checkpoints" if n else "best checkpoint"
            samples = sel.get("samples") or self.select.get("samples")
            on = f" on {samples:,} samples" if isinstance(samples, int) else ""
            return f"{of} by {self.selected_by}{on}"
        return "last" if c in (None, "last") else f"step {c}"

    @property
    def select(self) -> dict[str, Any]:
        """The spec's select block's parameters ({} without one)."""
        return (self.spec.get("select") or {}).get("params") or {}

    @property
    def selection(self) -> dict[str, Any] | None:
        """The first seed's checkpoint selection (selection.json), if any."""
        return next((s.selection for s in self.seeds if s.selection), None)

    @property
    def selected_by(self) -> str | None:
        """The metric that chose the sampled checkpoint (``sample.checkpoint = best``), or None."""
        c = ((self.spec.get("sample") or {}).get("params") or {}).get("checkpoint")
        if c != "best" or not self.select:
            return None
        sel = self.selection
        if sel and sel.get("metric"):
            return str(sel["metric"])
        m = self.select.get("metric")
        return str(m.get("name") if isinstance(m, dict) else m or "fid")

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


def _reused(folder: Path, kind: str, stage_hash: Any, runs_root: Path | None) -> list[Path]:
    """A complete stage of another run with this run's ``stage_hash`` and seed (the runner
    reuses such stages instead of computing them again: issue 16.1), or none."""
    if runs_root is None or not isinstance(stage_hash, str):
        return []
    seed = layout.seed_number(folder)
    found = layout.stage_dirs_anywhere(runs_root, seed, kind, stage_hash)
    return [f for f in found if layout.is_complete_stage(f, stage_hash)][:1]


def read_seed(
    folder: Path, evaluates: bool = True, runs_root: Path | None = None, spec: dict[str, Any] | None = None
) -> SeedResult:
    """What one ``seed-<k>`` folder holds: its furthest stage and its numbers. A stage this
    run reused from another run (same hash, same seed; ``spec`` gives the hashes) counts as
    its own."""
    res = SeedResult(layout.seed_number(folder), path=folder)
    spec = spec or {}
    samples = _latest(layout.stage_dirs(folder, layout.SAMPLE)) or _reused(
        folder, layout.SAMPLE, spec.get("sample_hash"), runs_root
    )
    evals = _latest(layout.stage_dirs(folder, layout.EVAL)) or _reused(
        folder, layout.EVAL, spec.get("eval_hash"), runs_root
    )
    # The train folder: our own, or the one the sample stage recorded (a reused training run).
    train = layout.stage_dir(folder, layout.TRAIN)
    if not train.is_dir():
        train = next(iter(_reused(folder, layout.TRAIN, spec.get("train_hash"), runs_root)), train)
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
        if isinstance(tr, dict) and _num(tr.get("seconds")) is not None:
            res.seconds["train"] = float(tr["seconds"])
        if isinstance(tr, dict) and _num(tr.get("iterations")) is not None:
            res.iterations = int(tr["iterations"])
        elif res.log:
            res.iterations = int(res.log[-1]["step"])
    for s in samples:
        if res.grid is None and (s / layout.GRID).is_file():
            res.grid = s / layout.GRID
        if res.strip is None and (s / layout.STRIP).is_file():
            res.strip = s / layout.STRIP
    for s in samples:
        sr = _read_json(s / layout.RESULTS)
        if layout.is_complete(s) and isinstance(sr, dict):
            if _num(sr.get("seconds")) is not None:
                res.seconds["sample"] = float(sr["seconds"])
            if _num(sr.get("nfe_per_sample")) is not None:
                res.nfe = int(sr["nfe_per_sample"])
            break
    res.selection = read_selection(folder)
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
                if isinstance(v, (int, float))
                and not isinstance(v, bool)
                and k not in ("protocol", "seconds")
            }
            res.status = "complete"
            if _num(m.get("seconds")) is not None:
                res.seconds["evaluate"] = float(m["seconds"])
            else:  # the stage's own span: stage.json written first, DONE last
                try:
                    span = (e / layout.DONE).stat().st_mtime - (e / layout.STAGE).stat().st_mtime
                    res.seconds["evaluate"] = max(0.0, round(span, 3))
                except OSError:
                    pass
            if res.iterations is None and _num(res.protocol.get("iterations_trained")) is not None:
                res.iterations = int(res.protocol["iterations_trained"])
            break
    else:
        if evals:
            res.status = "evaluating"
    return res


def read_selection(seed: Path) -> dict[str, Any] | None:
    """The newest select stage of a seed folder: its selection.json, or while it runs the
    candidate records written so far (``best`` absent)."""
    for d in _latest(layout.stage_dirs(seed, layout.SELECT)):
        sel = _read_json(d / layout.SELECTION)
        if isinstance(sel, dict) and isinstance(sel.get("candidates"), list):
            return sel
        recs = [_read_json(p) for p in sorted((d / layout.CANDIDATES).glob("step-*.json"))]
        recs = [r for r in recs if isinstance(r, dict) and _num(r.get("step")) is not None]
        if recs:
            return {"metric": recs[0].get("metric"), "samples": recs[0].get("samples"), "candidates": recs}
    return None


def selection_doc(sel: dict[str, Any] | None) -> dict[str, Any] | None:
    """A selection for the report: the metric against the training step, and the winner."""
    if not sel:
        return None
    metric = str(sel.get("metric") or "")
    best = sel.get("best") if isinstance(sel.get("best"), dict) else {}
    rows = []
    for c in sorted(sel.get("candidates") or [], key=lambda c: _num(c.get("step")) or 0):
        v = _num(c.get("value"))
        rows.append(
            {
                "step": int(c["step"]),
                "value": v,
                "text": fmt_num(v) if v is not None else "failed",
                "samples": c.get("samples"),
                "seconds": c.get("seconds"),
                "best": best.get("step") == c.get("step"),
            }
        )
    won = (
        f"step {best['step']:,} ({metric} {fmt_num(best.get('value'))})"
        if best.get("step") is not None
        else ""
    )
    return {
        "metric": metric,
        "direction": "lower" if lower_is_better(metric) else "higher",
        "rows": rows,
        "best": won or "not chosen yet",
        "samples": sel.get("samples"),
    }


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
        seeds = [read_seed(s, evaluates, root, spec) for s in layout.seed_dirs(d)]
        published = [p for p in (spec.get("published") or []) if isinstance(p, dict)]
        sweep = spec.get("sweep") if isinstance(spec.get("sweep"), dict) else {}
        try:
            source = (d / layout.SOURCE).read_text(encoding="utf-8", errors="replace")
        except OSError:
            source = ""
        sets = _read_json(d / layout.OVERRIDES)
        overrides = tuple(str(v) for v in sets) if isinstance(sets, list) else ()
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
                spec=spec,
                source=source,
                overrides=overrides,
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
                spec=sp,
            )
        )
    return out


def _key(d: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(d.items()))


# ----------------------------------------------------------------------------- numbers
def fmt_stat(st: tuple[float, float, int] | None, spread: float | None = None) -> str:
    if st is None:
        return "–"
    sd = st[1] if st[2] > 1 else spread
    return fmt_num(st[0]) + (f" ± {fmt_num(sd, 3)}" if sd is not None else "")


def verdict(value: float, pub: float, err: float | None, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Within the published uncertainty (|Δ| ≤ its ±), within ``tolerance`` (relative), or off."""
    delta = value - pub
    if err is not None and err > 0 and abs(delta) <= err:
        return "within published uncertainty"
    if abs(delta) <= tolerance * abs(pub):
        return f"within {tolerance:.0%}"
    return "off"


def _published_value(pv: Any) -> tuple[float | None, float | None]:
    if isinstance(pv, dict):
        v, e = _num(pv.get("value")), _num(pv.get("error"))
    else:
        v, e = _num(pv), None
    return v, e


def _sweep_sort_key(sweep: dict[str, str]) -> list[tuple[int, float, str]]:
    return [_value_key(sweep[k]) for k in sorted(sweep)]


def _value_key(v: str) -> tuple[int, float, str]:
    """Numbers sorted as numbers, before names."""
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def _metric_names(recs: list[RunRecord]) -> list[str]:
    return sorted({m for r in recs for s in r.complete_seeds for m in s.metrics if not m.endswith("_std")})


def _arrow(metric: str) -> str:
    return "↓" if lower_is_better(metric) else "↑"


def _spread(r: RunRecord, metric: str) -> float | None:
    st = r.stat(metric)
    if st is None:
        return None
    return st[1] if st[2] > 1 else r.within_run_std(metric)


def significance(a: RunRecord, b: RunRecord, metric: str) -> str:
    """Whether b's mean differs from a's by more than their spreads (seeds, else within-run)."""
    sa, sb = a.stat(metric), b.stat(metric)
    if sa is None or sb is None:
        return "–"
    da, db = _spread(a, metric), _spread(b, metric)
    if da is None and db is None:
        return "one seed each: significance unknown"
    band = math.sqrt((da or 0.0) ** 2 + (db or 0.0) ** 2)
    return "not significant" if abs(sb[0] - sa[0]) <= band else "significant"


# ----------------------------------------------------------------------------- protocols
FID_LIKE = ("fid", "fid_domain", "kid")
INCEPTION_METRICS = ("fid", "inception_score", "kid", "precision", "recall", "f_score")
SAMPLES_NOTE = "FID from 1,000 samples reads ≈39 for a model whose 50k FID is 10.87 (ermongroup/ncsnv2#8)"
CHECKPOINT_NOTE = "moves FID by ~0.4 (yang-song/score_sde_pytorch#18)"


def _values(r: RunRecord, *keys: str) -> list[Any]:
    out: list[Any] = []
    for s in r.complete_seeds:
        v: Any = s.protocol
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None and v not in out:
            out.append(v)
    return out


def _int(v: Any) -> int | None:
    x = _num(v)
    return int(x) if x is not None else None


def _checkpoint_text(c: Any) -> str:
    return {"best_fid": "best by FID", "last": "last"}.get(str(c), f"step {c}")


def protocol_reasons(pub: dict[str, Any], r: RunRecord, metric: str) -> list[str]:
    """Why ``r``'s numbers are not comparable with the published ones (empty: comparable)."""
    want = pub.get("protocol") if isinstance(pub.get("protocol"), dict) else {}
    reasons: list[str] = []
    if not want or not r.complete_seeds:
        return reasons
    n_pub = _int(want.get("samples"))
    if n_pub is not None:
        for n in (_int(v) for v in _values(r, "samples")):
            if n is not None and n != n_pub:
                text = f"{n:,} samples vs the paper's {n_pub:,}"
                if metric in FID_LIKE and n < n_pub:
                    text += f": {SAMPLES_NOTE}"
                reasons.append(text)
    ref = want.get("reference")
    if ref:
        got = [str(v) for v in _values(r, "reference_split")] or [
            str(v).rsplit(":", 1)[-1] for v in _values(r, "reference")
        ]
        for g in got:
            if g != str(ref):
                reasons.append(f"reference: the {g} split vs the paper's {ref} split")
    ck = want.get("checkpoint")
    if ck is not None and not r.released:
        mine = r.checkpoint
        theirs = _checkpoint_text(ck)
        # the papers' best_fid is a select block by FID with sample.checkpoint = best
        if ck == "best_fid" and r.selected_by == "fid":
            mine = theirs
        if mine != theirs:
            text = f"checkpoint: {mine} vs {theirs}"
            if metric in FID_LIKE and "best by FID" in (mine, theirs):
                text += f": {CHECKPOINT_NOTE}"
            reasons.append(text)
    it = _int(want.get("iterations"))
    if it is not None and not r.released:
        for i in sorted({s.iterations for s in r.complete_seeds if s.iterations is not None}):
            if i != it:
                reasons.append(f"{i:,} training iterations vs the paper's {it:,}")
    w = want.get("inception_weights")
    if w and metric in INCEPTION_METRICS:
        for path, sha in zip(
            _values(r, "inception_weights") or [""], _values(r, "inception_weights_sha256") or [""]
        ):
            if str(w) not in str(path) and not str(sha).startswith(str(w)):
                reasons.append(f"Inception weights: {Path(str(path)).name or sha[:12]} vs the paper's {w}")
    return reasons


def protocol_text(r: RunRecord, metric: str) -> str:
    """The run's evaluation protocol in one cell: samples · reference · checkpoint · iterations."""
    if not r.complete_seeds:
        return "–"
    parts = []
    n = [str(v) for v in _values(r, "samples")]
    if n:
        parts.append(" / ".join(n) + " samples")
    ref = [str(v) for v in _values(r, "reference")]
    if ref:
        parts.append("ref " + " / ".join(ref))
    parts.append(r.checkpoint)
    iters = sorted({s.iterations for s in r.complete_seeds if s.iterations is not None})
    if iters and not r.released:
        parts.append(" / ".join(f"{i:,}" for i in iters) + " it")
    key = (
        ("domain_classifier", "sha256")
        if metric in ("fid_domain", "is_domain")
        else ("inception_weights_sha256",)
    )
    w = [str(v)[:12] for v in _values(r, *key)]
    if w:
        parts.append(("classifier " if len(key) == 2 else "weights ") + " / ".join(w))
    return " · ".join(parts)


def floor_of(r: RunRecord, metric: str) -> float | None:
    """The metric's floor when it has one: the same metric for as many real images as the run
    has samples (``domain_floor``: what a perfect model scores at this sample count; FID and
    KID are biased upwards at small counts), else the domain classifier's whole-split value."""
    matched = [v for v in (_num(x) for x in _values(r, "domain_floor", metric)) if v is not None]
    if matched:
        return statistics.fmean(matched)
    key = {"fid_domain": "floor_fid_domain_test_vs_train", "is_domain": "is_domain_test_split"}.get(metric)
    if key is None:
        return None
    vals = [_num(v) for v in _values(r, "domain_classifier", key)]
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else None


# ----------------------------------------------------------------------------- the document
def _labels(records: list[RunRecord]) -> None:
    """Each record's label: its experiment, its sweep point, and the settings that tell it
    apart from the other runs of the same experiment (a quick --set run beside the full one)."""
    by_exp: dict[str, list[RunRecord]] = {}
    for r in records:
        by_exp.setdefault(r.experiment, []).append(r)
    for exp, recs in by_exp.items():
        differing: list[str] = []
        if len(recs) > 1:
            flats = [r.flat for r in recs]
            keys = list(dict.fromkeys(k for f in flats for k in f))
            differing = [k for k in keys if len({f.get(k) for f in flats}) > 1]
        for r in recs:
            parts = [f"{k} = {v}" for k, v in sorted(r.swept.items(), key=lambda kv: kv[0])]
            swept = set(r.swept)
            extra = [f"{k} = {r.flat.get(k, '–')}" for k in differing if k not in swept][:3]
            r.label = exp + (" [" + ", ".join(parts + extra) + "]" if parts or extra else "")
    seen: dict[str, int] = {}
    for r in records:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in records:
        if seen[r.label] > 1 and r.ran:
            r.label += f" ({r.hash[:8]})"


def _metric_cell(r: RunRecord, metric: str) -> dict[str, Any]:
    st = r.stat(metric)
    return {
        "mean": None if st is None else st[0],
        "std": None if st is None else _spread(r, metric),
        "seeds": 0 if st is None else st[2],
        "text": fmt_stat(st, r.within_run_std(metric)),
    }


def _parent_of(r: RunRecord, records: list[RunRecord]) -> RunRecord | None:
    """The parent experiment's run closest to this one (fewest differing settings)."""
    if r.parent is None:
        return None
    cands = [p for p in records if p.experiment == r.parent and p.ran]
    if not cands:
        return None
    mine = r.flat
    return min(cands, key=lambda p: (len(settings.diff(p.flat, mine)), -len(p.complete_seeds)))


def _paper_changes(changes: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Changes of the paper's settings: taking released weights (train.from) is the paper's model."""
    return [c for c in changes if not c[0].startswith("train.from")]


def _pub_key(pubs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((str(p.get("label")), json.dumps(p.get("values"), sort_keys=True)) for p in pubs)


def comparison_rows(
    r: RunRecord,
    tolerance: float = DEFAULT_TOLERANCE,
    ablation_of: str | None = None,
    changes: list[tuple[str, str, str]] | None = None,
) -> list[dict[str, Any]]:
    """One row per (published label, metric) of one run."""
    rows: list[dict[str, Any]] = []
    for pub in r.published:
        values = pub.get("values") if isinstance(pub.get("values"), dict) else {}
        stated = isinstance(pub.get("protocol"), dict) and bool(pub.get("protocol"))
        for metric, pv in values.items():
            p, e = _published_value(pv)
            st = r.stat(metric)
            row: dict[str, Any] = {
                "experiment": r.label,
                "label": str(pub.get("label", "")),
                "metric": metric,
                "direction": _arrow(metric),
                "published": fmt_num(p) + (f" ± {fmt_num(e, 3)}" if e is not None else ""),
                "published_value": p,
                "published_error": e,
                "reproduced": "not run",
                "mean": None,
                "std": None,
                "delta": "–",
                "delta_pct": "–",
                "verdict": "not run",
                "reasons": [],
                "notes": [] if stated else ["the paper's protocol is not stated in the file"],
                "seeds": 0,
                "protocol": protocol_text(r, metric),
            }
            if r.ran and st is None:
                row["reproduced"] = "–"
                row["verdict"] = "not computed" if r.complete_seeds else f"incomplete ({r.state_summary()})"
            if st is not None and p is not None:
                mean, sd, n = st
                spread = _spread(r, metric)
                cell = fmt_num(mean) + (f" ± {fmt_num(spread, 3)}" if spread is not None else "")
                if n == 1 and spread is not None:
                    cell += " (within run)"
                reasons = protocol_reasons(pub, r, metric)
                if ablation_of is not None and changes:
                    reasons.insert(
                        0,
                        f"an ablation of {ablation_of} ({settings.describe(settings.collapse(changes))}): compared with "
                        "its parent's run instead",
                    )
                row.update(
                    reproduced=cell,
                    mean=mean,
                    std=spread,
                    delta=f"{mean - p:+.4g}",
                    delta_pct=f"{(mean - p) / abs(p) * 100:+.1f}%" if p else "–",
                    verdict="not comparable" if reasons else verdict(mean, p, e, tolerance),
                    reasons=reasons,
                    seeds=n,
                )
            rows.append(row)
    return rows


def sweep_table(recs: list[RunRecord]) -> dict[str, Any] | None:
    """A sweep pivoted: 2 swept settings → rows × columns, one table per metric; 1 → a row per
    value, a column per metric; more → a row per point. Best by the metric's direction."""
    keys = sorted({k for r in recs for k in r.swept})
    if not keys:
        return None
    metrics = _metric_names(recs)

    def best_of(m: str, rs: list[RunRecord]) -> float | None:
        vals = [st[0] for r in rs if (st := r.stat(m)) is not None]
        if len(vals) < 2:
            return None
        return min(vals) if lower_is_better(m) else max(vals)

    def cell(r: RunRecord | None, m: str, best: float | None) -> dict[str, Any]:
        if r is None:
            return {"text": "not run", "best": False, "mean": None, "std": None}
        st = r.stat(m)
        if st is None:
            text = "not run" if not r.ran else ("–" if r.complete_seeds else "incomplete")
            return {"text": text, "best": False, "mean": None, "std": None}
        return {
            "text": fmt_stat(st, r.within_run_std(m)),
            "best": st[0] == best,
            "mean": st[0],
            "std": _spread(r, m),
        }

    tables = []
    if len(keys) == 2:
        rk, ck = keys
        rows_v = sorted({r.swept.get(rk, "–") for r in recs}, key=_value_key)
        cols_v = sorted({r.swept.get(ck, "–") for r in recs}, key=_value_key)
        at = {(r.swept.get(rk, "–"), r.swept.get(ck, "–")): r for r in recs}
        for m in metrics:
            best = best_of(m, recs)
            tables.append(
                {
                    "title": f"{m} {_arrow(m)} (rows: {rk}; columns: {ck})",
                    "metric": m,
                    "headers": [f"{rk} \\ {ck}"] + cols_v,
                    "rows": [
                        [{"text": rv, "best": False}] + [cell(at.get((rv, cv)), m, best) for cv in cols_v]
                        for rv in rows_v
                    ],
                }
            )
    else:
        best = {m: best_of(m, recs) for m in metrics}
        rows = []
        for r in sorted(recs, key=lambda r: _sweep_sort_key(r.swept)):
            row = [{"text": r.swept.get(k, "–"), "best": False} for k in keys]
            row += [cell(r, m, best[m]) for m in metrics]
            row.append({"text": r.state_summary(), "best": False})
            rows.append(row)
        tables.append(
            {
                "title": "one row per " + (keys[0] if len(keys) == 1 else "sweep point"),
                "metric": None,
                "headers": keys + [f"{m} {_arrow(m)}" for m in metrics] + ["seeds"],
                "rows": rows,
            }
        )
    return {"keys": keys, "metrics": metrics, "tables": tables}


def method_groups(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Experiments of one file that compare methods (NCSN / NCSNv2 / ANSN): at least two
    methods, the same data and evaluation; they may also differ in their papers' training recipe
    (iterations, optimizer, checkpoint selection: papers/compare_cifar.exp), which each row
    names. A row per method: the metrics ± spread, floors, wall time and network evaluations."""
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.ran and not r.swept:
            groups.setdefault(r.source or r.paper, []).append(r)
    out = []
    for recs in groups.values():
        one: dict[str, RunRecord] = {}
        for r in sorted(recs, key=lambda r: len(r.complete_seeds)):
            one[r.experiment] = r  # the most complete run of each experiment
        rs = list(one.values())
        if len(rs) < 2:
            continue
        flats = [r.flat for r in rs]
        if any(
            not settings.is_method_key(k) and k.split(".")[0] in ("data", "evaluate")
            for i in range(1, len(rs))
            for k, _, _ in settings.diff(flats[0], flats[i])
        ):
            continue  # not the same data or evaluation: not one comparison
        labels = [settings.method_label(f) for f in flats]
        if len(set(labels)) < 2:
            continue
        order = {"NCSN": 0, "NCSNv2": 1, "ANSN": 2}
        pairs = sorted(zip(labels, rs), key=lambda lr: (order.get(lr[0], 9), lr[1].experiment))
        metrics = _metric_names(rs)
        base = pairs[0][1]
        rows = []
        for label, r in pairs:
            secs = [sum(s.seconds.values()) for s in r.complete_seeds if s.seconds]
            nfe = sorted({s.nfe for s in r.seeds if s.nfe is not None})
            rows.append(
                {
                    "method": label,
                    "experiment": r.label,
                    "metrics": {m: _metric_cell(r, m) for m in metrics},
                    "floors": {m: floor_of(r, m) for m in metrics if floor_of(r, m) is not None},
                    "seconds": statistics.fmean(secs) if secs else None,
                    "nfe": nfe[0] if len(nfe) == 1 else None,
                    "seeds": len(r.complete_seeds),
                    "significance": {
                        m: (significance(base, r, m) if r is not base else "baseline") for m in metrics
                    },
                    "grid": str(next((s.grid for s in r.seeds if s.grid), "") or ""),
                    "changed": [list(c) for c in settings.diff(base.flat, r.flat)],
                    # beyond the method: the paper's training recipe (iterations, optimizer, ...)
                    "recipe": [
                        list(c)
                        for c in settings.collapse(settings.diff(base.flat, r.flat))
                        if not settings.is_method_key(c[0])
                    ],
                }
            )
        methods = " vs ".join(dict.fromkeys(lbl for lbl, _ in pairs))
        out.append(
            {
                "title": base.paper if base.paper.startswith(methods) else f"{methods} ({base.paper})",
                "paper": base.paper,
                "metrics": metrics,
                "directions": {m: _arrow(m) for m in metrics},
                "rows": rows,
            }
        )
    return out


def build(
    records: list[RunRecord],
    tolerance: float = DEFAULT_TOLERANCE,
    runs_dir: str = "",
    show_all: bool = False,
) -> dict[str, Any]:
    """The report as one JSON-able document: every format renders it."""
    _labels(records)
    spec_of = {r.experiment: r.spec for r in records}
    by_paper: dict[str, dict[str, list[RunRecord]]] = {}
    for r in sorted(records, key=lambda r: (r.paper, r.experiment, _sweep_sort_key(r.swept), r.label)):
        by_paper.setdefault(r.paper, {}).setdefault(r.experiment, []).append(r)
    papers = []
    for paper, exps in by_paper.items():
        experiments, to_reproduce, unpublished = [], [], []
        for exp, recs in exps.items():
            ran = [r for r in recs if r.ran or r.path != Path()]
            if not ran and not show_all:
                pubs = recs[0].published
                if pubs:
                    for pub in pubs:
                        vals = pub.get("values") if isinstance(pub.get("values"), dict) else {}
                        to_reproduce.append(
                            {
                                "experiment": exp,
                                "label": str(pub.get("label", "")),
                                "numbers": ", ".join(
                                    f"{m} {fmt_num(_published_value(v)[0])}" for m, v in vals.items()
                                ),
                            }
                        )
                else:
                    unpublished.append(exp)
                continue
            shown = recs if show_all else ran
            entry: dict[str, Any] = {
                "name": exp,
                "description": recs[0].description,
                "parent": recs[0].parent,
                "runs": [],
                "rows": [],
                "ablation": None,
                "sweep": None,
            }
            for r in shown:
                parent = _parent_of(r, records)
                changes: list[tuple[str, str, str]] = []
                ablation_of = None
                if r.parent is not None:
                    pspec = parent.spec if parent is not None else spec_of.get(r.parent, {})
                    if pspec:
                        changes = _paper_changes(settings.diff(settings.flatten(pspec), r.flat))
                        inherited = _pub_key(r.published) == _pub_key(pspec.get("published") or [])
                        if changes and inherited and r.published:
                            ablation_of = r.parent
                    metrics = _metric_names([parent, r]) if parent is not None else []
                    if parent is not None and r.ran and changes and not r.swept and entry["ablation"] is None:
                        entry["ablation"] = {
                            "parent": parent.label,
                            "changed": [{"key": k, "parent": a, "value": b} for k, a, b in changes],
                            "changed_text": settings.describe(settings.collapse(changes), limit=8),
                            "metrics": [
                                {
                                    "metric": m,
                                    "direction": _arrow(m),
                                    "parent": _metric_cell(parent, m)["text"],
                                    "value": _metric_cell(r, m)["text"],
                                    "delta": (
                                        f"{r.stat(m)[0] - parent.stat(m)[0]:+.4g}"  # type: ignore[index]
                                        if r.stat(m) and parent.stat(m)
                                        else "–"
                                    ),
                                    "significance": significance(parent, r, m),
                                }
                                for m in metrics
                            ],
                        }
                entry["rows"] += comparison_rows(r, tolerance, ablation_of, changes)
                entry["runs"].append(_run_doc(r))
            swept = [r for r in shown if r.swept]
            if swept:
                entry["sweep"] = sweep_table(swept)
            if not recs[0].published and not any(r.published for r in shown):
                entry["no_published"] = True
            experiments.append(entry)
        papers.append(
            {
                "name": paper,
                "experiments": experiments,
                "to_reproduce": to_reproduce,
                "unpublished": unpublished,
            }
        )
    return {
        "runs_dir": runs_dir,
        **_summary(records, runs_dir),
        "tolerance": tolerance,
        "papers": papers,
        "methods": method_groups(records),
    }


def _run_doc(r: RunRecord) -> dict[str, Any]:
    metrics = _metric_names([r])
    iters = sorted({s.iterations for s in r.seeds if s.iterations is not None})
    return {
        "label": r.label,
        "experiment": r.experiment,
        "hash": r.hash,
        "path": str(r.path) if r.path != Path() else "",
        "sweep": r.swept,
        "status": r.state_summary(),
        "seed_status": ", ".join(f"seed {s.seed}: {s.status}" for s in r.seeds) or "no seed folder",
        "seeds": [{"seed": s.seed, "status": s.status, "metrics": s.metrics} for s in r.seeds],
        "iterations": iters,
        "checkpoint": r.checkpoint,
        "protocol": protocol_text(r, ""),
        "settings": {k: r.flat[k] for k in settings.KEY_SETTINGS if k in r.flat},
        "metrics": {m: _metric_cell(r, m) for m in metrics},
        "problems": r.problems,
        "selection": selection_doc(r.selection),
    }


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
    ax.set_title(title, fontsize=10)
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
    ax.set_title(title, fontsize=10)
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
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _fig_b64(fig)


def figures(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Per run: the sample grid, the intermediate strip and the loss per noise level of its first
    seed with them, headed by the run's label (experiment and the settings that differ); per
    sweep over a numeric setting: each metric against it."""
    out = []
    for r in sorted(records, key=lambda r: (r.paper, r.experiment, _sweep_sort_key(r.swept))):
        for s in r.seeds:
            if s.grid or s.strip or s.log or s.selection:
                out.append(
                    {
                        "title": r.label
                        + (f", seed {s.seed}" if len(r.seeds) > 1 else "")
                        + f" ({s.status})",
                        "grid": _png_b64(s.grid),
                        "strip": _png_b64(s.strip),
                        "loss": loss_curve_b64(s.log, f"{r.label}: training loss per noise level"),
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


# ----------------------------------------------------------------------------- rendering
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
    "·": r"$\cdot$",
    "₁": r"$_1$",
    "≤": r"$\le$",
    "★": r"$\star$",
}


def latex_escape(s: Any) -> str:
    return "".join(_TEX.get(c, c if ord(c) < 128 else "?") for c in str(s))


def _verdict_class(v: str) -> str:
    if v == "off":
        return "off"
    if v.startswith("within"):
        return "ok"
    if v == "not comparable":
        return "nc"
    return "notrun"


COMPARISON_COLUMNS = [
    ("label", "published in"),
    ("metric", "metric"),
    ("published", "published"),
    ("reproduced", "reproduced"),
    ("delta", "Δ"),
    ("delta_pct", "Δ %"),
    ("verdict", "verdict"),
    ("seeds", "seeds"),
    ("protocol", "protocol (samples · reference · checkpoint · iterations · weights)"),
]


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(
        [[_md_cell(c) for c in r] for r in rows],
        headers=[_md_cell(h) for h in headers],
        tablefmt="github",
        disable_numparse=True,
    )


def md_comparison(rows: list[dict[str, Any]]) -> str:
    rows, notes = _numbered(rows)
    cols = [(k if k != "verdict" else "verdict_text", h) for k, h in COMPARISON_COLUMNS]
    text = _md([[r[k] for k, _ in cols] for r in rows], [h for _, h in cols])
    if notes:
        text += "\n\n" + "\n".join(f"[{i}] not comparable: {n}" for i, n in enumerate(notes, 1))
    return text


def md_sweep(t: dict[str, Any]) -> str:
    rows = [[c["text"] + (" **(best)**" if c.get("best") else "") for c in row] for row in t["rows"]]
    return _md(rows, t["headers"])


def md_ablation(a: dict[str, Any]) -> str:
    return _md(
        [
            [m["metric"] + " " + m["direction"], m["parent"], m["value"], m["delta"], m["significance"]]
            for m in a["metrics"]
        ],
        ["metric", f"parent: {a['parent']}", "this run", "Δ", "significance"],
    )


def md_methods(g: dict[str, Any]) -> str:
    headers, rows = method_table(g)
    return _md(rows, headers)


def md_selection(sel: dict[str, Any]) -> str:
    rows = [
        [
            f"{r['step']:,}",
            ("**" + r["text"] + "** (chosen)") if r["best"] else r["text"],
            r["samples"],
            r["seconds"],
        ]
        for r in sel["rows"]
    ]
    return _md(rows, ["step", f"{sel['metric']} ({sel['direction']} is better)", "samples", "seconds"])


def md_runs(runs: list[dict[str, Any]]) -> str:
    rows = []
    for r in runs:
        nums = "; ".join(f"{m} {c['text']}" for m, c in r["metrics"].items()) or "–"
        rows.append(
            [r["label"], r["hash"], r["seed_status"] + ("; " + "; ".join(r["problems"]) if r["problems"] else ""),
             " / ".join(str(i) for i in r["iterations"]) or "–", nums]
        )  # fmt: skip
    return _md(rows, ["run", "hash", "status", "iterations", "numbers (mean ± std over seeds)"])


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["tex"] = latex_escape
    env.filters["comparison"] = md_comparison
    env.filters["sweep"] = md_sweep
    env.filters["ablation"] = md_ablation
    env.filters["methods"] = md_methods
    env.filters["runs"] = md_runs
    env.filters["selection"] = md_selection
    env.filters["numbered"] = _numbered
    env.filters["method_table"] = method_table
    env.filters["method_notes"] = method_notes
    env.filters["verdict_class"] = _verdict_class
    return env


def render(
    records: list[RunRecord],
    fmt: str = "md",
    tolerance: float = DEFAULT_TOLERANCE,
    runs_dir: str = "",
    show_all: bool = False,
    width: int = 100,
) -> str:
    """The report as Markdown (``md``), self-contained HTML (``html``), LaTeX (``tex``), JSON
    (``json``, for tools) or terminal text (``text``, tables wrapped to ``width`` columns)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
    doc = build(records, tolerance, runs_dir, show_all)
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "text":
        return render_text(doc, width)
    ctx = {
        **doc,
        "columns": COMPARISON_COLUMNS,
        "tolerance_pct": f"{tolerance:.0%}",
        "all_runs": [r for p in doc["papers"] for e in p["experiments"] for r in e["runs"] if r["path"]],
    }
    if fmt == "html":
        ctx["figures"] = figures(records)
        for g in ctx["methods"]:
            for r in g["rows"]:
                r["grid_b64"] = _png_b64(r["grid"])
    if fmt == "md":
        ctx["samples"] = [(rec.label, str(s.grid)) for rec in records for s in rec.seeds[:1] if s.grid]
    return _env().get_template(f"report.{fmt}.j2").render(**ctx)


def report(
    runs_dir: str | Path = "runs",
    fmt: str = "md",
    out: str | Path | None = None,
    expected: list[dict[str, Any]] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    show_all: bool = False,
    width: int = 100,
) -> str:
    """Collect ``runs_dir``, add the never-run ``expected`` specs, render ``fmt``; written
    atomically to ``out`` when given. Returns the text."""
    records = add_expected(collect(runs_dir), expected or [])
    text = render(records, fmt, tolerance, runs_dir=str(runs_dir), show_all=show_all, width=width)
    if out is not None:
        atomic.write_text(Path(out), text)
    return text
