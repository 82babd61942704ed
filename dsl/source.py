"""Reading a source file: refused unless a regular UTF-8 file of bounded size (looked at with stat; a FIFO is never opened)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dsl.ast import Pos
from dsl.errors import error

MAX_FILE_BYTES = 1_000_000  # a source file (root or imported)


def unreadable(path: str | Path) -> str | None:
    """Why ``path`` cannot be a source file (missing, a directory, a device or FIFO, too
    large), or None. Looks with stat only: a FIFO is never opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except ValueError:
        return "not a valid path"
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a device, FIFO or socket)"
    if st.st_size > MAX_FILE_BYTES:
        return f"is too large ({st.st_size:,} bytes; source files are limited to {MAX_FILE_BYTES:,})"
    return None


def read_source(path: str | Path) -> str:
    """The UTF-8 text of a regular file checked by :func:`unreadable`; a file that is not
    UTF-8 gives an error at the line and column of the first bad byte."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise error(None, f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:  # grew since stat
        raise error(None, f"{path}: is too large (source files are limited to {MAX_FILE_BYTES:,} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        col = len(data[start : e.start].decode("utf-8", errors="replace")) + 1
        bad = data[e.start : e.end].hex(" ")
        raise error(
            Pos(str(path), line, col, line, col + 1),
            f"the file is not UTF-8 text: invalid byte(s) {bad}",
            "save it as UTF-8",
        ) from None
