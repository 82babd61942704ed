"""A released checkpoint as a file (issue 17), without torch: where it is expected, its
content hash (the train stage's identity), where it is published, and the message when it is
not there. The spec's hash, `repro check` and `repro compile` use this module; reading and
writing the weights is :mod:`ncsn_core.released`.

The named path must be a regular file (:func:`ncsn_core.io.regular_file`): a directory, FIFO,
device node or symlink loop is a :class:`UserError` naming the path (exit 2), never a traceback
or a hash that never ends. The SHA-256 is streamed once and remembered, in memory and in
``<cache>/sha256.json`` (``$REPRO_CACHE`` or ``~/.cache/repro``), by (path, size, modification
time, device, inode): a multi-GB checkpoint is hashed by the first ``repro check`` only."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ncsn_core import io as atomic
from ncsn_core.errors import UserError

SOURCES = {
    "ncsn": "the Google Drive folder linked from the README of github.com/ermongroup/ncsn "
    "(a model's run folder holds checkpoint.pth)",
    "ncsnv2": "the Google Drive folder linked from the README of github.com/ermongroup/ncsnv2 "
    "(a model's run folder holds checkpoint.pth and checkpoint_<step>.pth)",
    "repro": "a repro run folder: runs/<experiment>/<hash>/seed-<k>/train/checkpoints/step-<n>.pt",
}
_SHA_CACHE: dict[str, str] = {}
_DISK_CACHE_MAX_BYTES = 16 << 20
_DISK_CACHE_ENTRIES = 1000


def weights_kwargs(w: Any) -> dict[str, Any]:
    return w.kwargs() if hasattr(w, "kwargs") else dict(w)


def file_path(w: Any) -> Path:
    return Path(weights_kwargs(w)["path"]).expanduser()


def _disk_cache_path() -> Path:
    return (
        Path(os.environ.get("REPRO_CACHE") or Path.home() / ".cache" / "repro").expanduser() / "sha256.json"
    )


def _read_disk_cache() -> dict[str, str]:
    try:
        raw = atomic.read_regular_bytes(_disk_cache_path(), "hash cache", _DISK_CACHE_MAX_BYTES)
        d = json.loads(raw)
    except (UserError, OSError, ValueError):
        return {}
    return {k: v for k, v in d.items() if isinstance(v, str)} if isinstance(d, dict) else {}


def _remember(key: str, sha: str) -> None:
    _SHA_CACHE[key] = sha
    cache = _read_disk_cache()
    cache[key] = sha
    if len(cache) > _DISK_CACHE_ENTRIES:  # the oldest entries go (dicts keep insertion order)
        cache = dict(list(cache.items())[-_DISK_CACHE_ENTRIES:])
    try:
        atomic.write_json(_disk_cache_path(), cache, indent=None, sort_keys=False)
    except OSError:
        pass  # an unwritable cache only costs hashing again


def file_sha256(path: Path) -> str | None:
    """The file's content SHA-256, None if nothing is at ``path``. A path that is there but is
    not a regular file (directory, FIFO, device, symlink loop) is a :class:`UserError` naming
    it. Hashed once per (path, size, mtime, device, inode), remembered across processes."""
    try:
        os.stat(Path(path).expanduser())
    except FileNotFoundError:  # absent (or a dangling link): "checkpoint not present"
        return None
    except OSError:
        pass  # a symlink loop, no permission: regular_file names it
    p = atomic.regular_file(path, "released checkpoint (released(path = ...))")
    try:
        st = os.stat(p)
    except OSError:  # removed meanwhile
        return None
    key = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_dev}|{st.st_ino}"
    if key in _SHA_CACHE:
        return _SHA_CACHE[key]
    sha = _read_disk_cache().get(key)
    if sha is not None:
        _SHA_CACHE[key] = sha
        return sha
    h = hashlib.sha256()
    with atomic.open_regular(p, "released checkpoint (released(path = ...))") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    _remember(key, h.hexdigest())
    return _SHA_CACHE[key]


def identity(w: Any) -> dict[str, Any]:
    """What the train hash covers: the file's SHA-256 and format (the path too while the file is
    not present, so two missing files differ)."""
    kw = weights_kwargs(w)
    sha = file_sha256(file_path(w))
    if sha is None:
        return {"format": kw["format"], "path": kw["path"], "sha256": None}
    return {"format": kw["format"], "sha256": sha}


def published_where(w: Any) -> str:
    kw = weights_kwargs(w)
    return kw.get("published") or SOURCES[kw["format"]]


def description(w: Any) -> dict[str, Any]:
    """``repro compile --json``'s view: path, format, SHA-256 or "checkpoint not present"."""
    kw = weights_kwargs(w)
    sha = file_sha256(file_path(w))
    return {
        "path": kw["path"],
        "format": kw["format"],
        "sha256": sha or "checkpoint not present",
        "published": published_where(w),
    }


def weights_text(w: Any, sha: str) -> str:
    """The metrics protocol's ``weights`` entry."""
    kw = weights_kwargs(w)
    return f"released checkpoint {kw['path']} (sha256 {sha}, format {kw['format']})"


def missing_message(w: Any, experiment: str = "") -> str:
    p = file_path(w)
    who = f"experiment {experiment}: " if experiment else ""
    return (
        f"{who}train.from: checkpoint not present: {p} (looked for {p.resolve()}). Download it from "
        f"{published_where(w)} and put it there, or change the path in the .exp file "
        f"(docs/released.md). Nothing was run."
    )


def preflight(spec: Any) -> None:
    """Before anything else runs: a released checkpoint named by ``spec`` must be present."""
    w = spec.weights()
    if w is not None and file_sha256(file_path(w)) is None:  # refuses a non-regular file by name
        raise UserError(missing_message(w, spec.experiment))
