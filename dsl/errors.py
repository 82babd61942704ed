"""Compiler-style diagnostics: ``path:line:col: error: message``, the line quoted, a caret."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from dsl.ast import Pos
from dsl.lines import line_at, shown
from ncsn_core.errors import UserError

# Source text of pseudo-files (``--set`` arguments) so diagnostics can quote them.
_PSEUDO_SOURCES: dict[str, str] = {}


def register_source(name: str, text: str) -> None:
    _PSEUDO_SOURCES[name] = text


@attrs.frozen
class Diagnostic:
    pos: Pos | None
    message: str
    notes: tuple[str, ...] = ()
    severity: str = "error"

    def render(self, sources: dict[str, str] | None = None) -> str:
        head = (
            f"{self.pos}: {self.severity}: {self.message}" if self.pos else f"{self.severity}: {self.message}"
        )
        lines = [head]
        if self.pos is not None:
            src = _source_line(self.pos, sources)
            if src is not None:
                width = max(1, (self.pos.end_col - self.pos.col) if self.pos.end_line == self.pos.line else 1)
                gutter = f"{self.pos.line:>5} | "
                lines.append(gutter + src)
                lines.append(
                    " " * (len(gutter) - 2) + "| " + " " * (self.pos.col - 1) + "^" + "~" * (width - 1)
                )
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)


def _source_line(pos: Pos, sources: dict[str, str] | None) -> str | None:
    text = (sources or {}).get(pos.file) or _PSEUDO_SOURCES.get(pos.file)
    if text is None:
        try:  # quote only a regular file of bounded size (never block on a FIFO)
            st = os.stat(pos.file)
            if not stat.S_ISREG(st.st_mode) or st.st_size > 1_000_000:
                return None
            text = Path(pos.file).read_bytes().decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return None
    line = line_at(text, pos.line)  # split as the parser counts lines (dsl/lines.py)
    return None if line is None else shown(line)


class DiagnosticError(UserError):
    """One or more positioned mistakes in `.exp` text; the CLI prints them all and exits with 2."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        self.specs: list[Any] = []  # what did compile, when other experiments of the file did not
        super().__init__("\n".join(d.render() for d in self.diagnostics))

    def render(self) -> str:
        body = "\n".join(d.render() for d in self.diagnostics)
        n = len(self.diagnostics)
        if n > 1:
            body += f"\n{n} errors"
        return body


def error(pos: Pos | None, message: str, *notes: str) -> DiagnosticError:
    return DiagnosticError([Diagnostic(pos, message, tuple(notes))])
