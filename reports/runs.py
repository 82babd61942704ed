"""`repro ls` and `repro diff`: every run folder with its status, and what differs between two
runs (or two compiled experiments) with where each value came from. Torch-free; the CLI
compiles files and passes the specs in.

Status of a run folder (over its seeds): *running* (a stage's lock is held: ``.<stage>.lock``
beside the stage folder, its owner file present and the lock busy), *failed at <stage>* (a stage
folder without ``DONE`` and no lock held), *stale* (the file it came from now compiles to another
hash, under the same ``--set`` values when the run was made with some: ``overrides.json``;
only known when the file is given or found), else *done*.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

from ncsn_core import layout
from reports import settings
from reports.judge import compare_runs
from reports.read import RunRecord, _metric_names, collect
from reports.shape import _labels, _metric_cell
from reports.tables import fmt_num

STATUSES = ("done", "running", "failed", "stale", "damaged")  # damaged: a folder that cannot be read safely
_STAGE_NAMES = {layout.TRAIN: "train", layout.SAMPLE: "sample", layout.EVAL: "evaluate"}


def lock_held(stage: Path) -> bool:
    """Whether a live process holds ``stage``'s lock. Only looked at when its owner file exists
    (a holder writes it and removes it on release); the probe is a non-blocking flock on the
    existing lock file, released at once."""
    if not layout.owner_file(stage).exists():
        return False
    try:
        fd = os.open(layout.lock_file(stage), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _stages(seed: Path) -> list[tuple[str, Path]]:
    out = []
    for kind in (layout.TRAIN, layout.SAMPLE, layout.EVAL):
        if kind == layout.TRAIN:
            d = layout.stage_dir(seed, layout.TRAIN)
            if d.is_dir() or layout.owner_file(d).exists():
                out.append((kind, d))
        else:
            out += [(kind, d) for d in layout.stage_dirs(seed, kind)]
    return out


def run_status(r: RunRecord) -> tuple[str, str]:
    """(status, detail) of a run folder from its stage folders and locks."""
    running, failed = [], []
    for s in layout.seed_dirs(r.path):
        for kind, d in _stages(s):
            if lock_held(d):
                running.append(f"{s.name}/{d.name}")
            elif d.is_dir() and not layout.is_complete(d):
                failed.append((_STAGE_NAMES[kind], f"{s.name}/{d.name}"))
    if running:
        return "running", "computing " + ", ".join(running)
    if failed:
        return "failed", f"failed at {failed[0][0]} ({failed[0][1]} has no DONE and no lock is held)"
    if not r.seeds:
        return "failed", "no seed folder"
    return "done", r.state_summary()


def _age(path: Path) -> float | None:
    newest = 0.0
    try:
        for p in path.rglob("*"):
            try:
                newest = max(newest, p.stat().st_mtime)
            except OSError:
                continue
    except OSError:
        return None
    return time.time() - newest if newest else None


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= n:
            return f"{seconds / n:.0f} {unit}"
    return f"{seconds:.0f} s"


def find_source(r: RunRecord, folders: list[Path]) -> Path | None:
    """The .exp file (in ``folders``) whose text is the run's ``source.exp``."""
    if not r.source:
        return None
    for folder in folders:
        for f in sorted(folder.glob("*.exp")) if folder.is_dir() else [folder]:
            try:
                if f.read_text(encoding="utf-8") == r.source:
                    return f
            except OSError:
                continue
    return None


def ls_rows(
    runs_dir: str | Path,
    compiled: dict[Any, list[dict[str, Any]]] | None = None,
    files: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One row per run folder. ``compiled``: experiment → the canonical specs its file compiles
    to now (for *stale*), and (experiment, overrides) → the same with a run's ``--set`` values
    (a run made with ``--set`` is compared with its file compiled under the same values);
    ``files``: run path → the file it came from."""
    records = collect(runs_dir)
    _labels(records)
    rows = []
    for r in sorted(records, key=lambda r: (r.paper, r.experiment, r.label)):
        status, detail = run_status(r)
        now = (compiled or {}).get((r.experiment, r.overrides) if r.overrides else r.experiment)
        if status == "done" and now is not None:
            hashes = {
                str(s.get("hash"))
                for s in now
                if dict(s.get("sweep") or {}) == dict(r.spec.get("sweep") or {})
            }
            hashes = hashes or {str(s.get("hash")) for s in now}
            if r.hash not in hashes:
                status, detail = (
                    "stale",
                    f"the file now compiles to {', '.join(sorted(hashes))}, not {r.hash}",
                )
        flat = r.flat
        rows.append(
            {
                "file": (files or {}).get(str(r.path), ""),
                "experiment": r.experiment,
                "label": r.label,
                "path": str(r.path),
                "status": status,
                "detail": detail,
                "set": list(r.overrides),
                "hash": r.hash,
                "train_hash": str(r.spec.get("train_hash", "")),
                "sample_hash": str(r.spec.get("sample_hash", "")),
                "eval_hash": str(r.spec.get("eval_hash", "")),
                "settings": {k: flat[k] for k in settings.KEY_SETTINGS if k in flat},
                "metrics": {m: _metric_cell(r, m) for m in _metric_names([r])},
                "seeds": [s.seed for s in r.seeds],
                "age_seconds": _age(r.path),
            }
        )
    return rows


# ----------------------------------------------------------------------------- diff
def provenance(res: Any) -> dict[str, str]:
    """Where each setting of a resolved experiment (dsl.resolve.Resolved) came from, keyed as
    :func:`reports.settings.flatten` keys: the resolver's note (``inherited from …``, ``set by
    --set …``, ``swept at …``) or the place it was written."""
    out: dict[str, str] = {}
    for kind, b in res.blocks.items():
        out[kind] = b.origin or f"written at {b.pos}"
        for k, e in b.params.items():
            out[f"{kind}.{k}"] = e.origin or f"written at {e.key_pos}"
        stages = getattr(b, "stages", [])
        if stages:
            out["sample.stages"] = stages[0].origin or f"written at {stages[0].name_pos}"
        for st in stages:
            for k, e in st.params.items():
                out[f"sample.{st.name}.{k}"] = e.origin or f"written at {e.key_pos}"
    return out


def diff_doc(
    a_name: str,
    a_spec: dict[str, Any],
    b_name: str,
    b_spec: dict[str, Any],
    a_where: dict[str, str] | None = None,
    b_where: dict[str, str] | None = None,
    a_run: RunRecord | None = None,
    b_run: RunRecord | None = None,
) -> dict[str, Any]:
    """The settings that differ (with where each value came from: the resolver's notes for
    files, "default" when unset there, "spec.json" for run folders) and the metric deltas."""
    fa, fb = settings.flatten(a_spec), settings.flatten(b_spec)

    def where(w: dict[str, str] | None, key: str, flat: dict[str, str]) -> str:
        if w is None:
            return "spec.json"
        if key in w:
            return w[key]
        return "default" if key in flat else "absent (not a setting of this experiment's components)"

    changes = [
        {"key": k, "a": va, "b": vb, "a_from": where(a_where, k, fa), "b_from": where(b_where, k, fb)}
        for k, va, vb in settings.diff(fa, fb)
    ]
    metrics = []
    if a_run is not None and b_run is not None:
        for m in _metric_names([a_run, b_run]):
            sa, sb = a_run.stat(m), b_run.stat(m)
            metrics.append(
                {
                    "metric": m,
                    "a": _metric_cell(a_run, m),
                    "b": _metric_cell(b_run, m),
                    "delta": (sb[0] - sa[0]) if sa and sb else None,
                    "delta_text": f"{sb[0] - sa[0]:+.4g}" if sa and sb else "–",
                    "significance": (c := compare_runs(a_run, b_run, m)).text,
                    "test": c.as_dict(),
                }
            )
    return {
        "a": {"name": a_name, "experiment": a_spec.get("experiment"), "hash": a_spec.get("hash")},
        "b": {"name": b_name, "experiment": b_spec.get("experiment"), "hash": b_spec.get("hash")},
        "same_hash": a_spec.get("hash") == b_spec.get("hash"),
        "settings": changes,
        "metrics": metrics,
    }


def find_run(runs_dir: str | Path, spec: dict[str, Any]) -> RunRecord | None:
    """The run folder of a compiled spec (same experiment and hash), if it ran."""
    for r in collect(runs_dir):
        if r.experiment == spec.get("experiment") and r.hash == spec.get("hash"):
            return r
    return None


def metric_text(metrics: dict[str, Any]) -> str:
    return "; ".join(f"{m} {c['text']}" for m, c in metrics.items()) or "–"


def damaged_rows(runs_dir: Path) -> list[dict]:
    """The run folders that cannot be read safely (ncsn_core.layout.damaged_runs), with why."""
    empty = dict.fromkeys(("file", "train_hash", "sample_hash", "eval_hash"), "")
    return [
        {
            **empty,
            "experiment": d.parent.name,
            "label": f"{d.parent.name}/{d.name}",
            "path": str(d),
            "status": "damaged",
            "detail": why,
            "set": [],
            "hash": d.name,
            "settings": {},
            "metrics": {},
            "seeds": [],
            "age_seconds": None,
        }  # fmt: skip
        for d, why in layout.damaged_runs(runs_dir)
    ]


__all__ = [
    "STATUSES",
    "age_text",
    "damaged_rows",
    "diff_doc",
    "find_run",
    "find_source",
    "fmt_num",
    "ls_rows",
    "provenance",
]
