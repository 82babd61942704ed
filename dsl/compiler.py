"""The front end in one call: file → resolved → checked → RunSpecs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsl.check import check
from dsl.resolve import load, resolve
from dsl.sets import require_multirun
from ncsn_core.spec import RunSpec


def compile_file(
    path: str | Path,
    *,
    experiments: Sequence[str] | None = None,
    sets: Sequence[str] = (),
    compute_auto: bool = True,
    data_cache: dict[str, Any] | None = None,
    warnings: list[Any] | None = None,
    max_runs: int | None = None,
    multirun: bool = True,
) -> list[RunSpec]:
    """Compile every experiment defined in ``path`` (or the named ones), one RunSpec per
    sweep point. Raises :class:`dsl.errors.DiagnosticError` listing every mistake.
    ``multirun=False``: a ``--set`` with several values is an error naming ``--multirun``
    (the command line and repro.api ask for it; a file's own ``sweep`` is always allowed)."""
    require_multirun(sets, multirun)
    program = load(path)
    resolved = resolve(program, experiments, sets, max_runs=max_runs)
    return check(resolved, compute_auto=compute_auto, data_cache=data_cache, warnings=warnings)
