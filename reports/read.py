"""Read: run folders on disk → :class:`RunRecord` / :class:`SeedResult` (the report's records).

Reads the layout of docs/architecture.md ("Runs on disk", :mod:`ncsn_core.layout`):
``runs/<experiment>/<run-hash>/spec.json`` and each ``seed-<k>/`` (``train/`` with
``results.json`` and ``log.jsonl``, ``sample-*/`` with ``grid.png`` and ``intermediates.png``,
``select-*/`` with ``selection.json``, ``eval-*/metrics.json``); a stage folder without
``DONE`` is incomplete. Nothing found on disk makes it crash: what is missing or unreadable is
kept as a problem of the record. Torch-free.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import attrs

from ncsn_core import layout
from reports import settings

# Suffixes of metrics.json keys that qualify a metric rather than being one (docs/evaluation.md):
# its own spread (``_std``), its floor over draws of real images (``_floor_mean``, ``_floor_sd``,
# ``_floor_n``) and its bootstrap over the samples (``_boot_sd``, ``_ci_low``, ``_ci_high``).
AUX_SUFFIXES = ("_std", "_floor_mean", "_floor_sd", "_floor_n", "_boot_sd", "_ci_low", "_ci_high")


def is_auxiliary(key: str) -> bool:
    """Whether a metrics.json key qualifies a metric (spread, floor, interval): never a column."""
    return key.endswith(AUX_SUFFIXES)


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
    # The hash of the network's initial weights (train/results.json ``init_hash``): seeds of two
    # runs with equal hashes started alike, and their comparison is paired. None: not recorded.
    init_hash: str | None = None
    # Per-sample values of a metric (metrics.json ``per_sample``: {metric: [...]}), when the
    # evaluation records them: a bootstrap over samples for one seed.
    per_sample: dict[str, list[float]] = attrs.Factory(dict)
    # The train stage folder the seed's samples came from (its own, or one it shares with other
    # runs: a training reused by several sample settings is drawn once).
    train: Path | None = None


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
    # The file's own run (not swept) taken into its experiment's sweep as the point of the file's
    # values (set by reports.shape.sweep_points, which fills ``sweep`` with them).
    sweep_own: bool = False

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

    def seed_values(self, metric: str) -> list[tuple[float, str | None]]:
        """Each complete seed's finite value of the metric, with its initial-weight hash."""
        return [
            (s.metrics[metric], s.init_hash)
            for s in self.complete_seeds
            if metric in s.metrics and math.isfinite(s.metrics[metric])
        ]

    def sample_values(self, metric: str) -> list[float]:
        """The per-sample values of the metric when exactly one seed is complete ([] otherwise)."""
        seeds = [s for s in self.complete_seeds if metric in s.metrics]
        return seeds[0].per_sample.get(metric, []) if len(seeds) == 1 else []

    def within_run_std(self, metric: str) -> float | None:
        """The metric's own spread (IS over splits, KID over subsets) when one seed ran."""
        seeds = [s for s in self.complete_seeds if metric in s.metrics]
        if len(seeds) == 1:
            v = seeds[0].metrics.get(metric + "_std")
            return v if v is not None and math.isfinite(v) else None
        return None

    def _one_seed(self, metric: str) -> SeedResult | None:
        seeds = [s for s in self.complete_seeds if metric in s.metrics]
        return seeds[0] if len(seeds) == 1 else None

    def recorded_ci(self, metric: str) -> tuple[float, float] | None:
        """The interval the evaluation recorded for one seed's value (``<metric>_ci_low`` and
        ``_ci_high``: value ± 1.96 bootstrap sd over the samples), or None."""
        s = self._one_seed(metric)
        if s is None:
            return None
        lo, hi = s.metrics.get(metric + "_ci_low"), s.metrics.get(metric + "_ci_high")
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        return lo, hi

    def boot_sd(self, metric: str) -> float | None:
        """One seed's bootstrap sd over its samples (``<metric>_boot_sd``), or None."""
        s = self._one_seed(metric)
        v = s.metrics.get(metric + "_boot_sd") if s is not None else None
        return v if v is not None and math.isfinite(v) and v >= 0 else None

    def recorded_floor(self, metric: str) -> tuple[float, float | None, int] | None:
        """The floor the evaluation recorded (``<metric>_floor_mean``, ``_floor_sd``,
        ``_floor_n``: the metric on draws of real images at the run's sample count) as mean, sd
        and number of draws; seeds that recorded different floors are pooled (their draws
        together). None when no complete seed records one."""
        groups: list[tuple[float, float, int]] = []
        for s in self.complete_seeds:
            m, sd, n = (s.metrics.get(metric + x) for x in ("_floor_mean", "_floor_sd", "_floor_n"))
            if m is None or not math.isfinite(m):
                continue
            k = int(n) if n is not None and math.isfinite(n) and n >= 1 else 1
            g = (m, sd if sd is not None and math.isfinite(sd) else 0.0, k)
            if g not in groups:  # the draws are cached: seeds of one run usually share them
                groups.append(g)
        if not groups:
            return None
        total = sum(k for _, _, k in groups)
        mean = sum(m * k for m, _, k in groups) / total
        if total < 2:
            return mean, None, total
        ss = sum((k - 1) * sd**2 + k * (m - mean) ** 2 for m, sd, k in groups)
        return mean, math.sqrt(ss / (total - 1)), total

    def state_summary(self) -> str:
        if not self.seeds:
            return "not run"
        counts: dict[str, int] = {}
        for s in self.seeds:
            counts[s.status] = counts.get(s.status, 0) + 1
        return ", ".join(f"{n} {st}" for st, n in sorted(counts.items(), key=lambda kv: -STATES.index(kv[0])))


# ----------------------------------------------------------------------------- reading
def _read_json(p: Path) -> Any:
    """Runs-folder JSON through the bounded reader (regular files only, size and depth capped);
    a damaged record reads as None."""
    try:
        return layout.read_json(p)
    except (OSError, ValueError, UnicodeDecodeError):  # DamagedFile is a ValueError
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
        res.train = train.resolve()
        res.status = "trained" if layout.is_complete(train) else "training"
        res.log = _read_log(train / layout.LOG)
        tr = _read_json(train / layout.RESULTS)
        if isinstance(tr, dict) and _num(tr.get("seconds")) is not None:
            res.seconds["train"] = float(tr["seconds"])
        if isinstance(tr, dict) and _num(tr.get("iterations")) is not None:
            res.iterations = int(tr["iterations"])
        elif res.log:
            res.iterations = int(res.log[-1]["step"])
        if isinstance(tr, dict) and isinstance(tr.get("init_hash"), str):
            res.init_hash = tr["init_hash"]
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
            res.per_sample = _per_sample(m.get("per_sample"))
            if res.init_hash is None and isinstance(res.protocol.get("init_hash"), str):
                res.init_hash = res.protocol["init_hash"]
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


def _per_sample(v: Any) -> dict[str, list[float]]:
    """``{metric: [value per sample]}`` with its finite numbers; anything else: {}."""
    if not isinstance(v, dict):
        return {}
    out = {}
    for k, xs in v.items():
        if isinstance(xs, list):
            nums = [x for x in (_num(x) for x in xs) if x is not None and math.isfinite(x)]
            if nums:
                out[str(k)] = nums
    return out


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


# ----------------------------------------------------------------------------- keys
def _sweep_sort_key(sweep: dict[str, str]) -> list[tuple[int, float, str]]:
    return [_value_key(sweep[k]) for k in sorted(sweep)]


def _value_key(v: str) -> tuple[int, float, str]:
    """Numbers sorted as numbers, before names."""
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def _metric_names(recs: list[RunRecord]) -> list[str]:
    """The metrics the runs' complete seeds record (auxiliary keys left out: :func:`is_auxiliary`)."""
    return sorted({m for r in recs for s in r.complete_seeds for m in s.metrics if not is_auxiliary(m)})
