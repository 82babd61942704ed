"""Atomic checkpoints: write a temporary file, fsync, rename; a crash never leaves half a file."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import torch

from ncsn_core.errors import CheckpointError

_NAME = re.compile(r"step-(\d+)\.pt$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {e}). It is damaged or not a repro "
            f"checkpoint; move it away to resume from the previous checkpoint (nothing else was changed)."
        ) from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(f"checkpoint {path} is not a repro training checkpoint (no step/model entries)")
    return state


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = _NAME.search(p.name)
        if m and not p.name.startswith("."):
            out.append((int(m.group(1)), p))
    return sorted(out)


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:08d}.pt"


def prune(folder: Path, keep: int) -> None:
    cks = list_checkpoints(folder)
    for _, p in cks[:-keep]:
        p.unlink(missing_ok=True)
