"""`repro check`: validate .exp files without running anything (repro.api.check)."""

from __future__ import annotations

import typer

from dsl.commands.common import (
    DEFAULT_MAX_RUNS,
    ExpOpt,
    Files,
    MaxRunsOpt,
    SetOpt,
    UseOpt,
    guard,
    warn,
    with_uses,
)


@guard
def check(
    files: Files,
    set_: SetOpt = None,
    use: UseOpt = None,
    experiment: ExpOpt = None,
    max_runs_: MaxRunsOpt = DEFAULT_MAX_RUNS,
) -> None:
    """Validate .exp files (syntax, names, types, ranges) without running anything."""
    from repro import api

    warnings: list = []
    try:
        specs = api.check(
            files, sets=with_uses(use, set_), experiments=experiment, max_runs=max_runs_, warnings=warnings
        )
    finally:
        warn(warnings)
    typer.echo(
        f"ok: {len(files)} file(s), {len(specs)} run(s)"
        + (f", {len(warnings)} warning(s)" if warnings else "")
    )
    for path, exps in api.missing_released(specs).items():
        typer.echo(
            f"note: released checkpoint not present: {path} ({', '.join(exps)}); `repro run` needs it, "
            "see docs/released.md",
            err=True,
        )


def register(app: typer.Typer) -> None:
    app.command()(check)
