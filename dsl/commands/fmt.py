"""`repro fmt`: print, rewrite or check the canonical formatting of .exp files (dsl.fmt)."""

from __future__ import annotations

from typing import Annotated

import typer

from dsl.commands.common import Files, guard


@guard
def fmt(
    files: Files,
    write: Annotated[bool, typer.Option("--write", "-w", help="rewrite the files in place")] = False,
    check_only: Annotated[bool, typer.Option("--check", help="exit 1 if a file is not formatted")] = False,
) -> None:
    """Print (or rewrite) the canonical formatting of .exp files."""
    from dsl.errors import error
    from dsl.fmt import format_text
    from dsl.source import read_source, unreadable

    bad = 0
    for f in files:
        problem = unreadable(f)
        if problem is not None:
            raise error(None, f"{f}: {problem}")
        text = read_source(f)
        new = format_text(text, str(f))
        if check_only:
            if new != text:
                typer.echo(f"{f}: not formatted", err=True)
                bad += 1
        elif write:
            if new != text:
                from ncsn_core import io as atomic

                atomic.write_text(f, new)
        else:
            typer.echo(new, nl=False)
    if bad:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(fmt)
