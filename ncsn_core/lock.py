"""Per-stage locks: two ``repro run`` of the same file never compute the same stage twice.

A stage folder (``train/``, ``sample-<h>/``, ``eval-<h>/``) is computed while holding
``.<stage>.lock`` beside it in the seed folder (an :func:`fcntl.flock` through the ``filelock``
library; the lock file stays in place). The holder records ``pid`` and ``host`` in
``.<stage>.owner`` (removed on release). A second process waits, saying for what and for whom,
then finds the stage complete and reuses it; with ``wait=False`` it stops with
:class:`StageBusy` instead. The kernel releases a flock when its process dies (even by
SIGKILL), so a stale lock is simply taken over: the owner file a dead holder left behind is
reported and the stage resumes from what it wrote (its last checkpoint).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ncsn_core import io as atomic
from ncsn_core import layout
from ncsn_core.errors import RunError
from ncsn_core.io import WriteError
from ncsn_core.layout import lock_file, owner_file


class StageBusy(RunError):
    """Another process holds the stage's lock and the caller asked not to wait (--no-wait)."""


def _holder(stage: Path) -> str:
    try:
        o = layout.read_json(owner_file(stage), max_bytes=64 * 1024)  # bounded: never a FIFO
        return f"pid {int(o['pid'])} on host {o['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def stage_lock(
    stage: Path, *, wait: bool = True, log: Callable[[str], None] = lambda m: None
) -> Iterator[None]:
    """Hold the lock of the stage folder ``stage`` (which need not exist yet)."""
    path = lock_file(stage)
    try:
        stage.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(stage.parent, e) from None
    lock = FileLock(str(path))
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = _holder(stage)
            if not wait:
                raise StageBusy(
                    f"{stage} is being computed by {holder}; run again when it is done, or without "
                    f"--no-wait to wait for it"
                ) from None
            log(f"waiting for {stage} (held by {holder})…")
            lock.acquire()
            state = "complete: reusing it" if layout.is_complete(stage) else "not complete: continuing it"
            log(f"{stage}: the other process let go; {state}")
    except OSError as e:  # the lock file cannot be created (read-only runs folder...)
        raise WriteError(path, e) from None
    try:
        if owner_file(stage).exists() and not layout.is_complete(stage):
            log(f"{stage}: taking over from {_holder(stage)}, which stopped without finishing")
        atomic.write_json(
            owner_file(stage),
            {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")},
        )
        yield
    finally:
        try:
            owner_file(stage).unlink(missing_ok=True)
        finally:
            lock.release()
