"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every write goes to a temporary file in the target's own folder (so the rename stays on one
filesystem), is flushed and fsynced, replaces the target with :func:`os.replace`, and the
folder is fsynced so the rename itself survives a crash. When anything fails (an exception
in the writer, a full disk) the target is left as it was, the temporary file is removed,
and :class:`WriteError` says which path could not be written.

No torch here: this module sits below everything (the report code uses it too). To stream a
tensor or checkpoint straight to disk, pass the serialiser as the writer:
``write_with(path, lambda f: torch.save(state, f))``.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ncsn_core.errors import WriteError

__all__ = ["WriteError", "write_bytes", "write_json", "write_text", "write_with"]


def _temp_name(path: Path) -> Path:
    # Hidden, unique per process and call; never matches a checkpoint or cache name.
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse a folder fsync
        pass
    finally:
        os.close(fd)


def write_with(path: str | os.PathLike[str], fn: Callable[[IO[bytes]], Any]) -> None:
    """Atomically replace ``path`` by what ``fn(f)`` writes into ``f``, a binary file open
    for writing (a temporary file next to ``path``). Creates the parent folders."""
    path = Path(path)
    tmp = _temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        with os.fdopen(fd, "wb") as f:
            try:  # a rewritten file keeps its permissions
                os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
            except FileNotFoundError:
                pass
            fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - the folder itself became unwritable
            pass
        if isinstance(e, Exception):
            raise WriteError(path, e) from e
        raise  # KeyboardInterrupt, SystemExit: as they are (the temporary file is gone)
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace ``path`` by ``data``."""
    write_with(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Atomically replace ``path`` by ``text``."""
    write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2, **dumps: Any) -> None:
    """Atomically replace ``path`` by ``obj`` as JSON (``json.dumps`` keywords pass through),
    ending in a newline."""
    write_text(path, json.dumps(obj, indent=indent, **dumps) + "\n")
