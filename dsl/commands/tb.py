"""`repro tb`: the command that opens TensorBoard on the training logs under a runs folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dsl.commands.common import guard


@guard
def tb(
    runs_dir: Annotated[
        Path, typer.Argument(help="a runs folder, an experiment's folder or one run's folder")
    ] = Path("runs"),
) -> None:
    """Print the command that opens TensorBoard on the training logs (train/tb/) under a runs
    folder: every run's, each named <experiment>/<run-hash>/seed-<k>."""
    import shlex

    from ncsn_core import layout

    if not runs_dir.is_dir():
        from dsl.errors import error

        raise error(None, f"{runs_dir}: no such runs folder")
    found = sorted(
        p for p in runs_dir.rglob(layout.TENSORBOARD) if p.is_dir() and p.parent.name == layout.TRAIN
    )
    if not found:
        typer.echo(
            f"no TensorBoard logs under {runs_dir} (train.tensorboard is on by default and needs "
            "the tensorboard package: pip install 'repro[tensorboard]')",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"tensorboard --logdir {shlex.quote(str(runs_dir))}")
    typer.echo(f"# {len(found)} training log(s), e.g. {found[0].relative_to(runs_dir).as_posix()}", err=True)


def register(app: typer.Typer) -> None:
    app.command("tb")(tb)
