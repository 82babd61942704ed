"""Per-invocation records: what each `repro run` was asked, browsable by date.

::

    <runs>/.invocations/<YYYY-MM-DD_HH-MM-SS>[-<n>]/
        invocation.json        the command line, working directory, file, --set values,
                               --multirun, and each run: label, experiment, hash, folder
        runs/<k>-<label>       a link to each run folder (relative: the runs folder moves whole)

The folder is hidden: readers of the runs folder (reports, ``repro ls``) skip it, and its
links sit one level deeper than any run-folder glob (``*/*/seed-k``) reaches. A run folder
stays where the layout puts it (``<runs>/<experiment>/<run-hash>/``); this is an index
beside it. Standard library only; ``repro ls`` reads it back (:func:`files_by_run`) to name the
file a ``--set`` run came from.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FOLDER = ".invocations"
RECORD = "invocation.json"
LINKS = "runs"


def _safe(name: str, width: int = 80) -> str:
    """A label as a file name: anything but letters, digits, ``._=-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name)[:width].strip("_") or "run"


def record(
    runs_dir: str | Path,
    *,
    argv: Sequence[str],
    file: str | Path,
    sets: Sequence[str] = (),
    multirun: bool = False,
    runs: Sequence[dict[str, Any]] = (),
    now: _dt.datetime | None = None,
) -> Path:
    """Write one invocation record under ``runs_dir/.invocations/`` and return its folder.
    ``runs``: one dict per run with ``label``, ``experiment``, ``hash`` and ``path`` (its
    folder). A link that cannot be made (a file system without links) is left out; the JSON
    record names every folder anyway."""
    root = Path(runs_dir) / FOLDER
    stamp = (now or _dt.datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    root.mkdir(parents=True, exist_ok=True)
    folder = root / stamp
    n = 1
    while True:
        try:
            folder.mkdir()
            break
        except FileExistsError:
            n += 1
            folder = root / f"{stamp}-{n}"
    links = folder / LINKS
    links.mkdir()
    rows = []
    for k, r in enumerate(runs):
        target = Path(r["path"])
        rel = os.path.relpath(target.resolve() if target.exists() else target, links.resolve())
        link = links / f"{k:03d}-{_safe(str(r['label']))}"
        try:
            link.symlink_to(rel, target_is_directory=True)
        except OSError:
            pass
        rows.append({**{k2: str(v) for k2, v in r.items()}, "path": os.path.relpath(target, runs_dir)})
    doc = {
        "time": stamp,
        "command": list(argv),
        "cwd": os.getcwd(),
        "file": str(file),
        "file_absolute": str(Path(file).resolve()),
        "set": list(sets),
        "multirun": bool(multirun),
        "runs": rows,
    }
    tmp = folder / (RECORD + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(folder / RECORD)
    return folder


def read_all(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every invocation record under ``runs_dir``, oldest first (a damaged one is skipped)."""
    out = []
    root = Path(runs_dir) / FOLDER
    for f in sorted(root.glob(f"*/{RECORD}")) if root.is_dir() else []:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("runs"), list):
            out.append({**doc, "folder": str(f.parent)})
    return out


def files_by_run(runs_dir: str | Path) -> dict[str, str]:
    """Run folder (relative to ``runs_dir``, as `experiment/hash`) → the .exp file the latest
    invocation that made it ran (as it was given, else its absolute path when that exists)."""
    out: dict[str, str] = {}
    for doc in read_all(runs_dir):
        f = str(doc.get("file", ""))
        absolute = str(doc.get("file_absolute", ""))
        if not Path(f).is_file() and Path(absolute).is_file():
            f = absolute
        for r in doc["runs"]:
            if isinstance(r, dict) and r.get("path"):
                out[str(Path(str(r["path"])))] = f
    return out
