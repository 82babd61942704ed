"""What every command module shares: the option types (files, --set, --experiment, --max-runs) and the error guard."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer

from dsl.errors import DiagnosticError
from ncsn_core.errors import ReproError

DEFAULT_MAX_RUNS = 1000  # dsl.resolve.DEFAULT_MAX_RUNS (not imported here: keeps startup light)

Files = Annotated[list[Path], typer.Argument(help=".exp files", show_default=False)]
File = Annotated[Path, typer.Argument(help="an .exp file", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option(
        "--set",
        "-s",
        help="override a value: --set train.iterations=100 (repeatable); several values sweep with "
        "--multirun: -m --set train.optimizer.lr=1e-4,2e-4 (commas outside [ ], ( ) and strings); a list is one "
        "value: --set evaluate.metrics=[fid,kid]",
    ),
]
UseOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--use",
        "-u",
        help="choose a config group's option: --use data=digits replaces the option of the "
        "experiments' `use data = ...` (repeatable); several options sweep with --multirun: -m --use data=a,b",
    ),
]
USE_PREFIX = "use:"  # dsl.sets.USE_PREFIX: --use values travel among the --set values as use:GROUP=OPTION


def with_uses(use: list[str] | None, sets: list[str] | None) -> list[str]:
    """``--use`` and ``--set`` values as the one override sequence every command passes on
    and records (dsl.sets.with_uses, without importing the parser)."""
    return [USE_PREFIX + u.strip() for u in use or ()] + list(sets or ())


def as_args(sets: list[str]) -> list[str]:
    """The override sequence as command-line arguments again (--use / --set)."""
    out: list[str] = []
    for v in sets:
        out += ["--use", v[len(USE_PREFIX) :]] if v.startswith(USE_PREFIX) else ["--set", v]
    return out


MaxRunsOpt = Annotated[
    int,
    typer.Option("--max-runs", min=1, help="refuse files whose sweeps make more runs than this"),
]
MultirunOpt = Annotated[
    bool,
    typer.Option(
        "--multirun",
        "-m",
        help="one run per value of a --set (or option of a --use) with several (a sweep)",
    ),
]

ExpOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--experiment", "-e", help="only these experiments of the file (repeatable)"),
]


def fail(e: BaseException, code: int) -> None:
    """Print ``e`` (a DiagnosticError compiler-style, else one line) on stderr and exit ``code``."""
    msg = e.render() if isinstance(e, DiagnosticError) else f"error: {e}"
    typer.echo(msg, err=True)
    raise typer.Exit(code)


def guard(fn):  # type: ignore[no-untyped-def]
    """Turn every :class:`~ncsn_core.errors.ReproError` into its message and exit code (2: a
    mistake in the input, 1: a run failed), never a traceback."""

    @functools.wraps(fn)
    def wrapper(*a, **k):  # type: ignore[no-untyped-def]
        try:
            return fn(*a, **k)
        except ReproError as e:
            fail(e, e.exit_code)
        except KeyboardInterrupt:
            typer.echo("interrupted: the last complete checkpoint is kept; run again to resume", err=True)
            raise typer.Exit(130) from None

    return wrapper


def warn(warnings: list) -> None:
    """Print warnings compiler-style on stderr (they never change the exit code)."""
    for w in warnings:
        typer.echo(w.render(), err=True)


def note(line: str) -> None:
    """One note line on stderr."""
    typer.echo(line, err=True)
