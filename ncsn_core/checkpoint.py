"""Training checkpoints: atomic saves (:mod:`ncsn_core.io`; a crash never leaves half a file),
weights-only loading with clear errors, a manifest of verified checkpoints, listing and pruning.

Loading uses torch's weights-only unpickler: a checkpoint holds tensors, dicts, lists, tuples,
ints, floats, strings and None only, so opening one never runs code. A file that needs more is
refused (:class:`CheckpointRefused`) without anything in it running.

Each checkpoints folder has a ``manifest.json``: ``{file name: {step, size, sha256}}`` of every
checkpoint written and read back. :func:`newest_loadable` verifies the newest checkpoint and
falls back to the newest one that verifies; :func:`prune` never deletes the only verified one.
A checkpoint without a manifest entry (the manifest lost, or its update cut off) is still
verified: torch's checkpoint is a zip whose members carry CRC-32s, all checked before loading
(:func:`zip_damage`), so a flipped byte is always found and the previous checkpoint used.

Temporary files of writers that were killed (``.step-<n>.pt.<pid>-<hex>.tmp``) are removed by
the next save and by :func:`newest_loadable` (a resume), once their process is gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ncsn_core import io as atomic
from ncsn_core import layout
from ncsn_core.errors import CheckpointError


class CheckpointRefused(CheckpointError):
    """A checkpoint whose unpickling needs more than tensors and plain values (it could run code)."""


def manifest_path(folder: Path) -> Path:
    return layout.manifest_file(folder)


def file_digest(path: Path) -> tuple[str, int]:
    """(SHA-256 hex, size in bytes) of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The manifest's entries by file name ({} when missing or unreadable)."""
    try:
        m = json.loads(manifest_path(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    entries = m.get("checkpoints") if isinstance(m, dict) else None
    return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}


def _write_manifest(folder: Path, entries: dict[str, dict[str, Any]]) -> None:
    atomic.write_json(manifest_path(folder), {"checkpoints": dict(sorted(entries.items()))})


def save(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically, streamed to disk (never held twice in memory), read it
    back and record its SHA-256 and size in the folder's manifest. Older checkpoints are not
    touched, so until this returns the previous one is still the newest verified one."""
    path = Path(path)
    atomic.clean_stale_temps(path.parent)
    atomic.write_with(path, lambda f: torch.save(state, f))
    sha, size = file_digest(path)
    entries = read_manifest(path.parent)
    entries[path.name] = {"step": int(state["step"]), "size": size, "sha256": sha}
    _write_manifest(path.parent, entries)


def _refusal_reason(e: BaseException) -> str | None:
    """Why the weights-only unpickler refused a file, or None for any other failure."""
    text = str(e)
    if not isinstance(e, pickle.UnpicklingError) or "weights only" not in text.lower():
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = [ln for ln in lines if "global" in ln.lower() or "unsupported" in ln.lower()]
    return (detail or lines or ["it needs objects other than tensors and plain values"])[0]


def _load_raw(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged or refused file
        why = _refusal_reason(e)
        if why is not None:
            raise CheckpointRefused(
                f"checkpoint {path} is refused: it holds more than tensors and plain values, which "
                f"repro never writes, and loading it could run code ({why}). Nothing in it was run; "
                f"delete it or move it away if you do not know where it came from."
            ) from None
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {e}). It is damaged or not a repro "
            f"checkpoint; move it away to resume from the previous checkpoint (nothing else was changed)."
        ) from None


def zip_damage(path: Path) -> str | None:
    """Why the zip container of a torch checkpoint is damaged (a member whose CRC-32 does not
    match, a truncated or unreadable archive), or None when every member checks out."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except zipfile.BadZipFile as e:
        return f"not a readable zip archive: {e}"
    except (OSError, EOFError, RuntimeError, ValueError) as e:
        return f"cannot be read: {type(e).__name__}: {e}"
    return None if bad is None else f"the CRC-32 of its member {bad} does not match"


def verify(path: Path) -> str | None:
    """Why ``path`` does not match its manifest entry (size, SHA-256), or, with no entry (a
    checkpoint of an older version, a lost manifest, or one whose update was cut off), why its
    zip members fail their CRC-32 check; None when it verifies."""
    entry = read_manifest(path.parent).get(path.name)
    if entry is None:
        return zip_damage(path)
    try:
        sha, size = file_digest(path)
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    if size != entry.get("size"):
        return f"{size} bytes, {entry.get('size')} written"
    if sha != entry.get("sha256"):
        return "its SHA-256 differs from the one written"
    return None


def load(path: Path, map_location: str | torch.device = "cpu", *, check: bool = True) -> dict[str, Any]:
    """Load a checkpoint weights-only; with ``check``, first compare it with its manifest entry.
    Raises :class:`CheckpointRefused` for a file that would need the full unpickler and
    :class:`CheckpointError` for a damaged one."""
    path = Path(path)
    _require_regular(path)  # a FIFO or /dev/zero named step-*.pt would hang the hashing below
    damaged = verify(path) if check and path.exists() else None
    if damaged is not None:
        _refuse_if_foreign(path)
        raise CheckpointError(
            f"checkpoint {path} is damaged ({damaged}); move it away to use the previous checkpoint"
        )
    state = _load_raw(path, map_location)
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(f"checkpoint {path} is not a repro training checkpoint (no step/model entries)")
    return state


def _require_regular(path: Path) -> None:
    """A checkpoint must be a regular file: anything else (FIFO, device, directory, symlink loop)
    is a damaged checkpoint, so the caller falls back to the previous one without reading it."""
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        return  # reported by the loader as before
    except (OSError, RuntimeError) as e:  # a symlink loop, a dangling link, no permission
        raise CheckpointError(f"checkpoint {path} cannot be read ({e.__class__.__name__}: {e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(
            f"checkpoint {path} is not a regular file; move it away to use the previous one"
        )


def _refuse_if_foreign(path: Path) -> None:
    """A file that does not match its manifest entry may be a foreign payload rather than a
    damaged checkpoint: open it weights-only (which runs nothing) so that it is refused by
    name (:class:`CheckpointRefused`) rather than skipped as damaged."""
    try:
        _load_raw(path, "cpu")
    except CheckpointRefused:
        raise
    except CheckpointError:
        pass


def newest_loadable(
    folder: Path, map_location: str | torch.device = "cpu", warn: Callable[[str], None] | None = None
) -> tuple[int, Path, dict[str, Any]] | None:
    """The newest checkpoint that verifies and loads: (step, path, state), or None when the
    folder has none. Damaged ones are skipped, saying so through ``warn``; a refused one stops
    everything (:class:`CheckpointRefused`); when none loads, the newest one's error is raised."""
    atomic.clean_stale_temps(folder)
    cks = list_checkpoints(folder)
    damaged: list[tuple[Path, CheckpointError]] = []
    for step, path in reversed(cks):
        try:
            state = load(path, map_location)
        except CheckpointRefused:
            raise
        except CheckpointError as e:
            damaged.append((path, e))
            continue
        if damaged and warn is not None:
            for bad, e in damaged:
                warn(f"checkpoint {bad.stem} is damaged ({_short(e, bad)}); resuming from {path.stem}")
        return step, path, state
    if damaged:
        raise damaged[0][1]
    return None


def _short(e: CheckpointError, path: Path) -> str:
    text = str(e)
    if "(" in text and ")" in text:
        return text[text.index("(") + 1 : text.index(")")]
    return text.replace(str(path), path.name)


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints in a checkpoints folder, by step."""
    if not folder.is_dir():
        return []
    found = ((layout.checkpoint_step(p), p) for p in folder.iterdir())
    return sorted((step, p) for step, p in found if step is not None)


def checkpoint_path(folder: Path, step: int) -> Path:
    return layout.checkpoint_file(folder, step)


def permanent(step: int, keep_every: int | None) -> bool:
    """Whether ``train.keep_every`` keeps the checkpoint of ``step`` for good (a multiple of it)."""
    return bool(keep_every) and step > 0 and step % int(keep_every) == 0


def retained_steps(
    iterations: int, checkpoint_every: int, keep: int, keep_every: int | None = None
) -> list[int]:
    """The steps whose checkpoints a finished training keeps on disk (what :func:`prune` leaves
    after the last save): the ``keep`` newest of those written (every ``checkpoint_every`` steps
    and the last), and every multiple of ``keep_every``. Pure arithmetic: ``repro compile``'s
    disk estimate and the select stage's candidates."""
    written = sorted({*range(checkpoint_every, iterations + 1, checkpoint_every), iterations} - {0})
    return sorted(set(written[-keep:]) | {s for s in written if permanent(s, keep_every)})


def prune(folder: Path, keep: int, keep_every: int | None = None) -> None:
    """Delete all but the ``keep`` newest checkpoints and those at multiples of ``keep_every``
    (``train.keep_every``: the candidates of checkpoint selection), except that the newest
    verified one (its size matches the manifest's) is always kept."""
    cks = list_checkpoints(folder)
    entries = read_manifest(folder)

    def verified(p: Path) -> bool:
        e = entries.get(p.name)
        try:
            return e is not None and p.stat().st_size == e.get("size")
        except OSError:
            return False

    keep_paths = {p for _, p in cks[-keep:]}
    if not any(verified(p) for p in keep_paths):
        newest_ok = next((p for _, p in reversed(cks) if verified(p)), None)
        if newest_ok is not None:
            keep_paths.add(newest_ok)
    keep_paths |= {p for step, p in cks if permanent(step, keep_every)}
    removed = False
    for _, p in cks:
        if p not in keep_paths:
            p.unlink(missing_ok=True)
            removed = entries.pop(p.name, None) is not None or removed
    if removed:
        _write_manifest(folder, entries)
