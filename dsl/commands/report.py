"""`repro report`: reproduced numbers beside the published ones, as md, html, tex, json or text (repro.api.report)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dsl.commands.common import guard, note


@guard
def report(
    runs_dir: Annotated[Path, typer.Argument(help="runs directory")] = Path("runs"),
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="md, html, tex, json or text (default: from --out's suffix; text on a terminal; else md)",
        ),
    ] = "",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write to this file")] = None,  # noqa: UP045
    papers: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="folder of .exp files whose published numbers are listed even if not run"),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="relative tolerance of the verdict when a paper gives none")
    ] = 0.10,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON document (same as --format json)")
    ] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="show the rows of experiments not run in full (default: a list)")
    ] = False,
    width: Annotated[int, typer.Option(help="terminal width of --format text", min=40)] = 100,
) -> None:
    """Reproduced numbers beside the published ones: runs by paper and experiment, verdicts
    where the protocol matches, sweeps pivoted, ablations against their parent, methods compared."""
    from repro import api

    fmt = api.report_format("json" if as_json else format, out, sys.stdout.isatty())
    text = api.report(
        runs_dir,
        format=fmt,
        out=out,
        papers=papers,
        tolerance=tolerance,
        show_all=show_all,
        width=width,
        log=note,
    )
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command()(report)
