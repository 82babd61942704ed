"""Training checkpoints: atomic saves (:mod:`ncsn_core.io`; a crash never leaves half a file),
loading with clear errors, listing and pruning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ncsn_core import io as atomic
from ncsn_core import layout
from ncsn_core.errors import CheckpointError


def save(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically, streamed to disk (never held twice in memory)."""
    atomic.write_with(path, lambda f: torch.save(state, f))


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
    """(step, path) of the checkpoints in a checkpoints folder, by step."""
    if not folder.is_dir():
        return []
    found = ((layout.checkpoint_step(p), p) for p in folder.iterdir())
    return sorted((step, p) for step, p in found if step is not None)


def checkpoint_path(folder: Path, step: int) -> Path:
    return layout.checkpoint_file(folder, step)


def prune(folder: Path, keep: int) -> None:
    cks = list_checkpoints(folder)
    for _, p in cks[:-keep]:
        p.unlink(missing_ok=True)
