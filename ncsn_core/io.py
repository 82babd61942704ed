"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every write goes to a temporary file in the target's own folder (so the rename stays on one
filesystem), is flushed and fsynced, replaces the target with :func:`os.replace`, and the
folder is fsynced so the rename itself survives a crash. When anything fails (an exception
in the writer, a full disk) the target is left as it was, the temporary file is removed,
and :class:`WriteError` says which path could not be written.

A full disk is named as such (``no space left on <folder>, needed ≈ N MB``) even when the
serialiser turns the failed ``write`` into its own error (torch's "unexpected pos ..."): the
file object handed to the writer remembers the ``ENOSPC``. Temporary files that a killed
writer left behind (its process is gone and the file has not changed for
:data:`STALE_TEMP_S` seconds) are removed by the next write of the same target, and by
:func:`clean_stale_temps` for a whole folder (a resume does that).

Reading a path the user named goes through :func:`regular_file` / :func:`open_regular` /
:func:`read_regular_bytes`: a directory, FIFO, device node or symlink loop is refused with a
message naming the path (a :class:`~ncsn_core.errors.UserError`, exit 2) instead of a
traceback or a read that never ends; a size cap refuses a file before it is read.
:func:`safe_export_target` checks where an export may be written.

No torch here: this module sits below everything (the report code uses it too). To stream a
tensor or checkpoint straight to disk, pass the serialiser as the writer:
``write_with(path, lambda f: torch.save(state, f))``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ncsn_core.errors import UserError, WriteError

__all__ = [
    "WriteError",
    "clean_stale_temps",
    "open_regular",
    "read_regular_bytes",
    "regular_file",
    "safe_export_target",
    "write_bytes",
    "write_json",
    "write_text",
    "write_with",
]

STALE_TEMP_S = 600.0  # a temporary file untouched this long, of a process that is gone, is stale
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def _temp_name(path: Path) -> Path:
    # Hidden, unique per process and call; never matches a checkpoint or cache name.
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove the temporary files of :func:`write_with` in ``folder`` (of target ``name`` only,
    when given) whose writer is gone: its pid is not alive here and the file has not been
    modified for :data:`STALE_TEMP_S` seconds (a writer on another host keeps its file fresh).
    Returns the removed paths; never raises."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        m = _TEMP_RE.match(e.name)
        if m is None or (name is not None and m["name"] != name):
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < STALE_TEMP_S:
                continue
            if _pid_alive(int(m["pid"])):
                continue
            os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            continue
    return removed


class _Tracked:
    """The file object a writer gets: counts the bytes written and remembers an ``ENOSPC``, so
    a serialiser that hides it behind its own error still reports a full disk."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.written = 0
        self.enospc: OSError | None = None

    def write(self, b: Any) -> int:
        try:
            n = self._f.write(b)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                self.enospc = e
                self.written += len(memoryview(b).cast("B"))
            raise
        self.written += n if n is not None else 0
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _no_space(path: Path, needed: int) -> OSError:
    try:
        free = f", {shutil.disk_usage(path.parent).free / 1e6:.0f} MB free"
    except OSError:
        free = ""
    mb = max(needed / 1e6, 0.1)
    return OSError(
        errno.ENOSPC,
        f"no space left on {path.parent} (No space left on device), needed ≈ {mb:.1f} MB or more{free}",
    )


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
    tracked: _Tracked | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(path.parent, path.name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        with os.fdopen(fd, "wb") as f:
            try:  # a rewritten file keeps its permissions
                os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
            except FileNotFoundError:
                pass
            tracked = _Tracked(f)
            fn(tracked)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - the folder itself became unwritable
            pass
        if isinstance(e, Exception):
            full = e if isinstance(e, OSError) and e.errno == errno.ENOSPC else None
            if tracked is not None and tracked.enospc is not None:
                full = tracked.enospc
            if full is not None:
                raise WriteError(path, _no_space(path, tracked.written if tracked else 0)) from e
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


# ----------------------------------------------------------------------------- user-named paths
def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _stat_error(path: Path, what: str, e: OSError, error: type[UserError]) -> UserError:
    if e.errno == errno.ELOOP:
        return error(f"{what} {path}: a symbolic link loop (it never reaches a file)")
    if e.errno == errno.ENOENT:
        return error(f"{what} {path}: no such file")
    return error(f"{what} {path}: cannot be read ({e.strerror or e})")


def _check_mode(
    path: Path, what: str, st: os.stat_result, max_bytes: int | None, error: type[UserError]
) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path} is {_kind(st.st_mode)}; expected a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(
            f"{what} {path} is {st.st_size / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.1f} MB "
            "for such a file; refusing to read it"
        )


def regular_file(
    path: str | os.PathLike[str],
    what: str,
    max_bytes: int | None = None,
    *,
    error: type[UserError] = UserError,
) -> Path:
    """``path`` (``~`` expanded) if it is a regular file (symbolic links followed) of at most
    ``max_bytes`` bytes; else ``error`` (a :class:`UserError`, exit 2) naming ``what`` and the
    path: missing, a directory, FIFO, device node, socket, symlink loop, or too large. Only
    ``stat`` is called: nothing is opened, so a FIFO cannot block."""
    p = Path(path).expanduser()
    try:
        st = os.stat(p)
    except OSError as e:
        raise _stat_error(p, what, e, error) from None
    _check_mode(p, what, st, max_bytes, error)
    return p


def open_regular(
    path: str | os.PathLike[str],
    what: str,
    max_bytes: int | None = None,
    *,
    error: type[UserError] = UserError,
) -> IO[bytes]:
    """``path`` opened for binary reading, only if it is a regular file (checked on the open
    descriptor, so a FIFO swapped in after :func:`regular_file` cannot block: it is opened
    non-blocking and refused)."""
    p = regular_file(path, what, max_bytes, error=error)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _stat_error(p, what, e, error) from None
    try:
        _check_mode(p, what, os.fstat(fd), max_bytes, error)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_regular_bytes(
    path: str | os.PathLike[str],
    what: str,
    max_bytes: int | None = None,
    *,
    error: type[UserError] = UserError,
) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` (a file that grows past the cap
    while being read is refused too)."""
    with open_regular(path, what, max_bytes, error=error) as f:
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise error(f"{what} {path} grew over the limit of {max_bytes / 1e6:.1f} MB while being read")
    return data


def safe_export_target(path: str | os.PathLike[str], force: bool) -> Path:
    """Where an export may be written: ``path`` (``~`` expanded) if nothing is there, or a
    regular file and ``force``. A directory, FIFO, device node or socket is refused (writing
    would hang, or fill a device), and so is an existing file without ``force``; a symlink
    loop or an unreadable path is refused by name. Write the result with :func:`write_with`
    (or :func:`write_text` / :func:`write_bytes`): a temporary file beside it, then a rename,
    so the target is never half-written and a device node is never opened."""
    p = Path(path).expanduser()
    try:
        st = os.stat(p)
    except FileNotFoundError:  # nothing there (or a dangling link, which the rename replaces)
        return p
    except OSError as e:
        raise _stat_error(p, "export target", e, UserError) from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"export target {p} is {_kind(st.st_mode)}; expected a new or regular file path")
    if not force:
        raise UserError(f"export target {p} exists; pass --force to overwrite it")
    return p
