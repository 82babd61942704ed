"""Progress of the long stages (sampling, evaluation, checkpoint loading; training has its own
bar in the runner): a rich bar on a terminal, otherwise one plain line every few seconds
(the first and the last always), never a dict repr.

The runner installs where notes go (:func:`reporting`, its ``log``: nothing under ``--quiet``
or on ranks other than 0); code deep in a stage calls :func:`note` or opens a :class:`Bar`
without knowing the run. No torch here.
"""

from __future__ import annotations

import contextvars
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_SINK: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "repro_progress", default=None
)
PLAIN_EVERY = 5.0  # seconds between plain progress lines


@contextmanager
def reporting(log: Callable[[str], None]) -> Iterator[None]:
    """Send :func:`note` lines and :class:`Bar` updates to ``log`` while inside."""
    token = _SINK.set(log)
    try:
        yield
    finally:
        _SINK.reset(token)


def note(msg: str) -> None:
    """One line saying what is being computed now (a no-op outside :func:`reporting`)."""
    sink = _SINK.get()
    if sink is not None:
        sink(msg)


def eta(seconds: float) -> str:
    """``41s``, ``3m05s``, ``2h07m``."""
    s = int(round(seconds))
    return (
        f"{s // 3600}h{s % 3600 // 60:02d}m"
        if s >= 3600
        else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")
    )


def tty() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


class Bar:
    """Progress of one stage in ``total`` units: ``update(done, info)``. Prints nothing outside
    :func:`reporting`. On a terminal a rich bar; otherwise ``<label>: <info> · <done>/<total>
    · ETA <t>`` at most every :data:`PLAIN_EVERY` seconds, plus the first and the final update."""

    def __init__(self, label: str, total: float, unit: str = "") -> None:
        self.label, self.total, self.unit = label, max(float(total), 1e-12), unit
        self.sink = _SINK.get()
        self.t0 = time.perf_counter()
        self.last = -1.0
        self._rich: Any = None
        self._task: Any = None
        if self.sink is not None and tty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._rich = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
            )
            self._rich.start()
            self._task = self._rich.add_task(label, total=self.total, info="")

    def update(self, done: float, info: str = "") -> None:
        if self.sink is None:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=done, info=info)
            return
        now = time.perf_counter()
        final = done >= self.total
        if self.last >= 0 and not final and now - self.last < PLAIN_EVERY:
            return
        self.last = now
        frac = min(done / self.total, 1.0)
        left = "" if frac <= 0 or final else f" · ETA {eta((now - self.t0) * (1 - frac) / frac)}"
        unit = f" {self.unit}" if self.unit else ""
        count = f"{int(done)}/{int(self.total)}{unit}"
        self.sink(f"{self.label}: {info + ' · ' if info else ''}{count}{left}")

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
