"""Groups: sweep tables (every point, the best only when distinguishable) and method groups of
the report's document, with the metric cell both share. Torch-free."""

from __future__ import annotations

import statistics
from typing import Any

from ncsn_core.registry import lower_is_better
from reports import settings, stats
from reports.judge import (
    _arrow,
    _spread,
    compare,
    compare_runs,
    floor_of,
    floor_stat,
    fmt_stat,
)
from reports.read import RunRecord, _metric_names, _sweep_sort_key, _value_key
from reports.tables import fmt_num


def _metric_cell(r: RunRecord, metric: str) -> dict[str, Any]:
    """Mean ± spread over seeds; one seed: the interval its evaluation recorded (``<metric>_ci_low``
    and ``_ci_high``, value ± 1.96 bootstrap sd), else a bootstrap interval of its per-sample
    values."""
    st = r.stat(metric)
    ci = r.recorded_ci(metric) if st is not None else None
    text = fmt_stat(st, r.within_run_std(metric))
    if ci is not None:
        text += f" (95% CI {fmt_num(ci[0])}–{fmt_num(ci[1])})"
    else:
        samples = r.sample_values(metric)
        ci = stats.sample_ci(samples) if st is not None and len(samples) > 1 else None
        if ci is not None:
            text += (
                f" ({1 - stats.ALPHA:.0%} CI {fmt_num(ci[0])}–{fmt_num(ci[1])} over {len(samples):,} samples)"
            )
    return {
        "mean": None if st is None else st[0],
        "std": None if st is None else _spread(r, metric),
        "seeds": 0 if st is None else st[2],
        "ci": list(ci) if ci is not None else None,
        "text": text,
    }


def sweep_points(recs: list[RunRecord]) -> list[RunRecord]:
    """The runs of one experiment that make its sweep: every swept point (of the file's sweeps
    and of ``--set key=v1,v2``), and the file's own run (not swept) as the point of its own
    values, when it differs from the swept runs in the swept settings only. Each point once."""
    swept = [r for r in recs if r.swept]
    if not swept:
        return []
    keys = sorted({k for r in swept for k in r.swept})
    for r in recs:
        if r.swept or not r.ran:
            continue
        if all(set(k for k, _, _ in settings.diff(r.flat, o.flat)) <= set(keys) for o in swept[:1]):
            r.sweep = {**r.sweep, **{k: r.flat.get(k, "–") for k in keys}}
            r.sweep_own = True
            swept.append(r)
    by_point: dict[tuple[tuple[int, float, str], ...], RunRecord] = {}
    for r in swept:
        key = tuple(_value_key(r.swept.get(k, "–")) for k in keys)
        key = tuple((a, b, "" if a == 0 else c) for a, b, c in key)  # 1e-4 and 0.0001: one point
        old = by_point.get(key)
        if old is None or len(r.complete_seeds) > len(old.complete_seeds):
            by_point[key] = r
    return list(by_point.values())


def best_point(m: str, rs: list[RunRecord]) -> dict[str, Any]:
    """The point with the best mean of ``m``, and whether it is distinguishable: better than
    every other point by the test of :func:`reports.judge.compare_runs` (significant at its
    level, same protocol). ``tests``: each other point's label → its test against the top."""
    with_value = [(r, st[0]) for r in rs if (st := r.stat(m)) is not None]
    if len(with_value) < 2:
        return {"best": None, "top": None, "text": "", "tests": {}}
    ordered = sorted(with_value, key=lambda rv: rv[1], reverse=not lower_is_better(m))
    top = ordered[0][0]
    tests = {id(r): compare_runs(top, r, m) for r, _ in ordered[1:]}
    weakest = next((c for c in tests.values() if not c.significant), None)
    if weakest is None:
        return {
            "best": top,
            "top": top,
            "text": f"best: {top.label} (better than every other point)",
            "tests": tests,
        }
    runner = next(r for r, _ in ordered[1:] if tests[id(r)] is weakest)
    return {
        "best": None,
        "top": top,
        "text": f"no distinguishable best: {runner.label} against {top.label}: {weakest.text}",
        "tests": tests,
    }


def sweep_table(recs: list[RunRecord]) -> dict[str, Any] | None:
    """A sweep pivoted: 2 swept settings → rows × columns, one table per metric; 1 → a row per
    value, a column per metric; more → a row per point. Each value with its uncertainty (over
    seeds, or a bootstrap interval over one seed's samples); the best marked only when it is
    distinguishable from every other point; else "no distinguishable best", and why."""
    keys = sorted({k for r in recs for k in r.swept})
    if not keys:
        return None
    metrics = _metric_names(recs)
    bests = {m: best_point(m, recs) for m in metrics}

    def cell(r: RunRecord | None, m: str) -> dict[str, Any]:
        if r is None:
            return {"text": "not run", "best": False, "mean": None, "std": None}
        st = r.stat(m)
        if st is None:
            text = "not run" if not r.ran else ("–" if r.complete_seeds else "incomplete")
            return {"text": text, "best": False, "mean": None, "std": None}
        c = _metric_cell(r, m)
        return {
            "text": c["text"],
            "best": bests[m]["best"] is r,
            "mean": st[0],
            "std": c["std"],
            "ci": c["ci"],
        }

    def versus(r: RunRecord, m: str) -> dict[str, Any]:
        b = bests[m]
        if b["top"] is None or r.stat(m) is None:
            return {"text": "–", "best": False}
        if r is b["top"]:
            return {"text": "top value" + (" (best)" if b["best"] is r else ""), "best": False}
        return {"text": b["tests"][id(r)].text, "best": False}

    def point_text(r: RunRecord, k: str) -> str:
        v = r.swept.get(k, "–")
        return v + (" (the file's value)" if r.sweep_own else "")

    tables = []
    if len(keys) == 2:
        rk, ck = keys
        rows_v = sorted({r.swept.get(rk, "–") for r in recs}, key=_value_key)
        cols_v = sorted({r.swept.get(ck, "–") for r in recs}, key=_value_key)
        at = {(r.swept.get(rk, "–"), r.swept.get(ck, "–")): r for r in recs}
        for m in metrics:
            tables.append(
                {
                    "title": f"{m} {_arrow(m)} (rows: {rk}; columns: {ck})",
                    "metric": m,
                    "headers": [f"{rk} \\ {ck}"] + cols_v,
                    "rows": [
                        [{"text": rv, "best": False}] + [cell(at.get((rv, cv)), m) for cv in cols_v]
                        for rv in rows_v
                    ],
                    "notes": [bests[m]["text"]] if bests[m]["text"] else [],
                }
            )
    else:
        rows = []
        for r in sorted(recs, key=lambda r: _sweep_sort_key(r.swept)):
            row = [{"text": point_text(r, k), "best": False} for k in keys]
            for m in metrics:
                row += [cell(r, m), versus(r, m)]
            row.append({"text": r.state_summary(), "best": False})
            rows.append(row)
        headers = list(keys)
        for m in metrics:
            headers += [f"{m} {_arrow(m)}", f"{m}: against the top value"]
        tables.append(
            {
                "title": "one row per " + (keys[0] if len(keys) == 1 else "sweep point"),
                "metric": None,
                "headers": headers + ["seeds"],
                "rows": rows,
                "notes": [f"{m}: {bests[m]['text']}" for m in metrics if bests[m]["text"]],
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
            tests = {m: compare(base, r, m) for m in metrics} if r is not base else {}
            rows.append(
                {
                    "method": label,
                    "experiment": r.label,
                    "metrics": {m: _metric_cell(r, m) for m in metrics},
                    "floors": {m: floor_of(r, m) for m in metrics if floor_of(r, m) is not None},
                    # a floor measured on several draws of real images: its spread and count
                    "floor_draws": {
                        m: {"sd": fs[1], "draws": fs[2]}
                        for m in metrics
                        if (fs := floor_stat(r, m)) is not None and fs[1] is not None
                    },
                    "seconds": statistics.fmean(secs) if secs else None,
                    "nfe": nfe[0] if len(nfe) == 1 else None,
                    "seeds": len(r.complete_seeds),
                    "significance": {m: tests[m].text if tests else "baseline" for m in metrics},
                    "tests": {m: c.as_dict() for m, c in tests.items()},
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
