"""A released checkpoint as a file (issue 17), without torch: where it is expected, its
content hash (the train stage's identity), where it is published, and the message when it is
not there. The spec's hash, `repro check` and `repro compile` use this module; reading and
writing the weights is :mod:`ncsn_core.released`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ncsn_core.errors import UserError

SOURCES = {
    "ncsn": "the Google Drive folder linked from the README of github.com/ermongroup/ncsn "
    "(a model's run folder holds checkpoint.pth)",
    "ncsnv2": "the Google Drive folder linked from the README of github.com/ermongroup/ncsnv2 "
    "(a model's run folder holds checkpoint.pth and checkpoint_<step>.pth)",
    "repro": "a repro run folder: runs/<experiment>/<hash>/seed-<k>/train/checkpoints/step-<n>.pt",
}
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def weights_kwargs(w: Any) -> dict[str, Any]:
    return w.kwargs() if hasattr(w, "kwargs") else dict(w)


def file_path(w: Any) -> Path:
    return Path(weights_kwargs(w)["path"]).expanduser()


def file_sha256(path: Path) -> str | None:
    """The file's content SHA-256 (cached by path, size and modification time), None if absent."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
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
    if w is not None and not file_path(w).is_file():
        raise UserError(missing_message(w, spec.experiment))
