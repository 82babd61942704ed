"""`repro export`: a repro checkpoint in the official code's layout (ncsn_core.released)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dsl.commands.common import guard


@guard
def export(
    source: Annotated[Path, typer.Argument(help="a run folder (one train stage) or a repro checkpoint file")],
    format: Annotated[str, typer.Option("--format", "-f", help="ncsnv2 or ncsn")] = "ncsnv2",
    out: Annotated[Path, typer.Option("--out", "-o", help="the checkpoint file to write")] = Path(
        "checkpoint.pth"
    ),
    force: Annotated[bool, typer.Option("--force", help="replace an existing file at --out")] = False,
) -> None:
    """Write a repro checkpoint in the official code's layout (docs/released.md)."""
    from ncsn_core.released import export as export_checkpoint

    typer.echo(export_checkpoint(source, format, out, force))


def register(app: typer.Typer) -> None:
    app.command()(export)
