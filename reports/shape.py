"""Shape: the records as the report's document: comparison rows against the papers, sweep
pivots, ablations against the parent run, method groups, run summaries (one JSON-able dict
that every renderer reads). Torch-free."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ncsn_core import layout
from ncsn_core.registry import lower_is_better
from reports import settings, stats
from reports.groups import _metric_cell, best_point, method_groups, sweep_points, sweep_table  # noqa: F401
from reports.judge import (
    DEFAULT_TOLERANCE,
    _arrow,
    _published_value,
    _spread,
    compare_runs,
    floor_text,
    protocol_reasons,
    protocol_text,
    verdict,
)
from reports.read import RunRecord, _metric_names, _num, _sweep_sort_key
from reports.tables import fmt_num


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


def _ablation_metric(parent: RunRecord, r: RunRecord, m: str) -> dict[str, Any]:
    """One metric of an ablation: the parent's value, this run's, Δ and the test of the two."""
    sp, sr = parent.stat(m), r.stat(m)
    test = compare_runs(parent, r, m)
    return {
        "metric": m,
        "direction": _arrow(m),
        "parent": _metric_cell(parent, m)["text"],
        "value": _metric_cell(r, m)["text"],
        "delta": f"{sr[0] - sp[0]:+.4g}" if sr and sp else "–",
        "significance": test.text,
        "comparable": not test.verdict.startswith("not comparable"),
        "test": test.as_dict(),
    }


def _parent_of(r: RunRecord, records: list[RunRecord]) -> RunRecord | None:
    """The run the ablation's ``extends`` names: the parent experiment's run made with the same
    ``--set`` values as this one (overrides.json; none: the file's own values), not a point of a
    ``--set`` sweep; among those (or, when none, among all) the closest (fewest differing
    settings, then most complete seeds)."""
    if r.parent is None:
        return None
    cands = [p for p in records if p.experiment == r.parent and p.ran]
    if not cands:
        return None
    mine = r.flat
    own = sorted(r.overrides)
    return min(
        cands,
        key=lambda p: (sorted(p.overrides) != own, len(settings.diff(p.flat, mine)), -len(p.complete_seeds)),
    )


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
                            "metrics": [_ablation_metric(parent, r, m) for m in metrics],
                        }
                entry["rows"] += comparison_rows(r, tolerance, ablation_of, changes)
                entry["runs"].append(_run_doc(r))
            points = sweep_points(shown)
            if points:
                entry["sweep"] = sweep_table(points)
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
    n_exp = sum(len(p["to_reproduce"]) and len({t["experiment"] for t in p["to_reproduce"]}) for p in papers)
    n_pub = sum(len(p["to_reproduce"]) for p in papers)
    n_unpub = sum(len(p["unpublished"]) for p in papers)
    not_run = ""
    if n_exp or n_unpub:
        not_run = (
            f"Not run: {n_exp} experiment(s) with {n_pub} published result(s) to reproduce"
            + (f", and {n_unpub} without a published number" if n_unpub else "")
            + " (repro report --all lists them in full)."
        )
    return {
        "runs_dir": runs_dir,
        **_summary(records, runs_dir),
        "tolerance": tolerance,
        "ran": ran_doc([r for r in records if r.ran or r.path != Path()], tolerance),
        "not_run": not_run,
        "papers": papers,
        "methods": method_groups(records),
        "significance_rule": stats.rule(),
    }


def _file_title(source: str, experiments: list[str]) -> str:
    """A run's file in words: its first comment line, else the experiments it was run from."""
    for line in source.splitlines():
        t = line.strip()
        if t.startswith("#") and t.lstrip("# "):
            t = t.lstrip("# ").rstrip()
            return t if len(t) <= 90 else t[:87].rsplit(" ", 1)[0] + " …"
        if t:
            break
    return "file of " + ", ".join(experiments) if source else "runs without a source.exp"


def _published_for(r: RunRecord, m: str, tolerance: float) -> list[str]:
    """The paper's numbers of the metric, each with where it is published and the run's verdict."""
    out = []
    for row in comparison_rows(r, tolerance):
        if row["metric"] == m and row["published_value"] is not None:
            why = f": {'; '.join(row['reasons'])}" if row["reasons"] else ""
            out.append(f"{row['published']} ({row['label']}): {row['verdict']}{why}")
    return out


def ran_doc(records: list[RunRecord], tolerance: float = DEFAULT_TOLERANCE) -> list[dict[str, Any]]:
    """What was run, first: the runs grouped by the file they came from (source.exp) and
    experiment; per run and metric its value with its uncertainty, the scale (the floor: the
    metric on real data at the same sample count; the paper's number where it has one), and
    against its parent's run when it is an ablation (the test, or why not comparable)."""
    files: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.ran or r.path != Path():
            files.setdefault(r.source, []).append(r)
    out = []
    for source, recs in files.items():
        recs = sorted(
            recs, key=lambda r: (r.parent is not None, r.experiment, _sweep_sort_key(r.swept), r.label)
        )
        exps = list(dict.fromkeys(r.experiment for r in recs))
        rows = []
        for r in recs:
            parent = _parent_of(r, records)
            metrics = _metric_names([r]) or [""]
            for i, m in enumerate(metrics):
                row: dict[str, Any] = {
                    "run": r.label if i == 0 else "",
                    "set": layout.override_args(r.overrides) if i == 0 else "",
                    "status": r.state_summary() if i == 0 else "",
                    "metric": f"{m} {_arrow(m)}" if m else "–",
                    "value": _metric_cell(r, m)["text"] if m else "–",
                    "floor": (floor_text(r, m) if m else None) or "–",
                    "published": "; ".join(_published_for(r, m, tolerance)) if m else "",
                    "versus": "",
                }
                row["published"] = row["published"] or "–"
                if parent is not None and m and parent.stat(m) is not None and r.stat(m) is not None:
                    c = compare_runs(parent, r, m)
                    d = r.stat(m)[0] - parent.stat(m)[0]  # type: ignore[index]
                    row["versus"] = f"vs parent {parent.label}: Δ {d:+.4g}, {c.text}"
                elif r.parent is not None and i == 0:
                    row["versus"] = f"parent {r.parent}: not run" if parent is None else ""
                rows.append(row)
        out.append({"file": _file_title(source, exps), "experiments": exps, "rows": rows})
    return out


RAN_COLUMNS = [
    ("run", "run"),
    ("status", "seeds"),
    ("metric", "metric"),
    ("value", "value (± sd over seeds, or CI over samples)"),
    ("floor", "floor (real data)"),
    ("published", "published"),
    ("versus", "against its parent"),
]


def ran_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The cells of the "What was run" table, in RAN_COLUMNS order (the run with its --set)."""
    return [
        [r["run"] + (f" ({r['set']})" if r["set"] else "")] + [r[k] for k, _ in RAN_COLUMNS[1:]] for r in rows
    ]


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
